"""cityvisor: an open, self-hosted urban hypervisor built on NGSI-LD."""

__version__ = "0.1.0"

"""The operator console and the public commune portal: static pages, vendored npm packages and
the small HTTP API they use. Composed with the API by :func:`cityvisor.web.create_web_app`."""

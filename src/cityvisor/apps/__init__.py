"""City apps: one package per capability (flood early warning, ...), each using only the ContextClient."""

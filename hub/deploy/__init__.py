"""Running catalog items: inference deployments of modules (DEEPaaS servers) and one-shot tries."""

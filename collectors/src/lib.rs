//! Adapters that reach outside (SSH, container runtimes, registries, ACME, notifications). Filled by the credentials, monitoring and container issues.

from ccreid.data import datasets  # noqa: F401,E402  (registers the real-dataset adapters)

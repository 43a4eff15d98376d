from ccreid.data import datasets  # noqa: F401,E402  (registers the real-dataset adapters)
from ccreid.data import synthetic  # noqa: F401  (registers the synthetic dataset)
from ccreid.data import synthetic_video  # noqa: F401  (registers the synthetic video dataset)

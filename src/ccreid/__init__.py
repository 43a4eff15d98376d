__version__ = "0.1.0"


def load(weights, device: str = "auto", flip=None, batch_size=None, backend: str = "auto", precision: str = "fp32",
         plugins=()):
    """A trained checkpoint as an :class:`ccreid.deploy.Embedder`: ``ccreid.load(w).embed(images)``;
    ``plugins`` replace the plug-ins the checkpoint records (moved since training)."""
    from ccreid.deploy import load as load_embedder

    return load_embedder(weights, device=device, flip=flip, batch_size=batch_size, backend=backend,
                         precision=precision, plugins=plugins)

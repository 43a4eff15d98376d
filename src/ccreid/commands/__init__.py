"""The back ends of the commands that do not train: ``ccreid test``, ``extract``, ``eval
--features``, ``index`` / ``search`` and the several-preset runs (``demo``, ``ablation``)."""

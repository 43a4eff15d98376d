"""Allowed values of config keys the core config checks (``ccreid.config``) and the modules
that use them (one definition each). Imports nothing of ccreid: anything may import it."""

#: ``data.parsing.missing``
MISSING_MODES = ("auto", "error", "skip")
#: precision settings (``train.amp``, ``ccreid parse --amp``)
AMP_MODES = ("auto", "off", "bf16", "fp16")
#: ``train.select_on``: the last epoch, or the best on the validation split (never the test split)
SELECT_ON = ("last", "val")
#: ``test.ap_mode``
AP_MODES = ("noninterp", "market1501")
#: ``model.pooling``
POOLINGS = ("avg", "max", "gem", "avgmax")
#: ``test.feature``: after the BNNeck, or before it
FEATURES = ("bn", "pre")

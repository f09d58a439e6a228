"""Integrations with the training code people already have: Lightning (:mod:`.lightning`) and the
Hugging Face Trainer (:mod:`.hf`). Both are optional extras (``pip install "lifelong[lightning]"``,
``"lifelong[hf]"``) imported only when used; both drive a :class:`lifelong.Learner`, so a strategy does
in them what it does in ``lifelong run``."""

"""A strategy inside ``lightning.Trainer.fit``: one ``fit`` per task, the strategy's hooks at Lightning's.

::

    cl = Learner(model, EWC(lam=100.0), stream)          # model: what your LightningModule wraps
    callback = LifelongCallback(cl)
    class Module(L.LightningModule):
        def training_step(self, batch, i):
            x, y = batch
            return cl.loss(cl.batch(x, y))                 # the strategy's batch (replay) and loss terms
        def configure_optimizers(self):
            return torch.optim.SGD(cl.parameters(), lr=0.1)
    for task in stream:
        L.Trainer(max_epochs=1, callbacks=[callback]).fit(Module(), loader_of(task))
    cl.accuracy_matrix

Hook mapping (Lightning 2.x):

===============================  ==========================================================
``setup(stage="fit")``           ``start_task`` (before_task), before configure_optimizers
                                 (progressive networks add a column there)
``on_fit_start``                 ``cl.optimizer`` = the trainer's optimizer (PackNet's retraining)
your ``training_step``           ``cl.batch`` (prepare_batch), ``cl.loss`` (forward, losses)
``on_before_optimizer_step``     after_backward, add_penalty_grad, before_step
``on_train_batch_end``           after_step
``on_fit_end``                   ``end_task`` (after_task: consolidate), the accuracy row
===============================  ==========================================================

``on_before_optimizer_step`` runs after Lightning's backward (and its gradient accumulation) and
before gradient clipping and the step, so ``gradient_clip_val`` clips the gradient with the penalty's
in it, as clipping after a plain loop's ``cl.before_step`` would. Gradient accumulation over k batches
calls the step hooks once per optimizer step, over the k batches joined (what a replay memory stores
covers all of them).
"""

from __future__ import annotations

from ..errors import UsageError
from ..train.learner import Learner

try:  # the extra: pip install "lifelong[lightning]"
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - exercised by the import test only when lightning is absent
    try:
        import pytorch_lightning as pl  # the older package name
    except ImportError:
        raise ImportError('lifelong.integrations.lightning needs Lightning: pip install "lifelong[lightning]"') from None


class LifelongCallback(pl.Callback):
    """Applies ``learner``'s strategy in each ``Trainer.fit`` (one fit = one task, in the stream's order)."""

    def __init__(self, learner: Learner):
        if not isinstance(learner, Learner):
            raise UsageError("LifelongCallback takes a lifelong.Learner: LifelongCallback(Learner(model, EWC(100.0), stream))")
        self.learner = learner
        self._stepped = False  # an optimizer step ran since the last after_step (gradient accumulation)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self.learner.start_task(self.learner.next_task)

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.optimizers:
            self.learner.optimizer = trainer.optimizers[0]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.learner.before_step(self._batch("on_before_optimizer_step"))
        self._stepped = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # once per optimizer step: with accumulate_grad_batches=k, after the k-th batch only (the Learner
        # gave the step hooks all k batches)
        if self._stepped and self.learner.last_batch is not None:
            self.learner.after_step(self.learner.last_batch)
        self._stepped = False

    def on_fit_end(self, trainer, pl_module) -> None:
        self.learner.end_task()

    def _batch(self, where: str):
        b = self.learner.last_batch
        if b is None:
            raise UsageError(f"{where}: the training_step did not call learner.batch(x, y): build the batch with it, "
                             "then return learner.loss(batch)")
        return b

"""A strategy inside the Hugging Face ``transformers.Trainer``: one ``train()`` per task.

::

    net = SequenceClassifier(BertForSequenceClassification(config))   # token ids -> logits
    stream = TaskStream.from_tensors([(ids_a, labels_a), (ids_b, labels_b)], test, scenario="domain")
    cl = Learner(net, EWC(lam=100.0), stream)
    for task in stream:
        LifelongTrainer(cl, model=net.model, args=TrainingArguments(...), train_dataset=dataset_of(task)).train()
    cl.accuracy_matrix

:class:`LifelongTrainer` is a ``Trainer`` whose ``train()`` is one task (``start_task`` before it,
``end_task`` after it: consolidate, then the accuracy row) and whose ``compute_loss`` is the strategy's
(``cl.batch`` — replay adds its samples — then the task loss over the live units plus the strategy's
extra terms: distillation). Its callback puts the other hooks at the Trainer's:

===========================  ===========================================================
``on_pre_optimizer_step``    after_backward, add_penalty_grad, before_step
``on_optimizer_step``        after_step
===========================  ===========================================================

Decisions: the Trainer clips gradients (``max_grad_norm``, default 1.0) *before*
``on_pre_optimizer_step``, so the penalty's gradient is added after clipping (set ``max_grad_norm=0``
to match a plain loop exactly). With gradient accumulation the step hooks see the last micro-batch.
Strategies whose state trains beside the model (HAT, progressive networks) get an AdamW over
``cl.parameters()`` when the Trainer has no optimizer yet. Evaluation (``trainer.evaluate``) uses the
model's own loss; the accuracy rows come from the Learner's stream. On a task-free stream the training
dataset is read in its order (a sequential sampler): give it the stream's training samples as stored,
and one ``train()`` with ``num_train_epochs=1`` is one pass; the curve's points are measured as in any loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..train.learner import Learner

try:  # the extra: pip install "lifelong[hf]"
    import transformers
except ImportError:  # pragma: no cover
    raise ImportError('lifelong.integrations.hf needs transformers: pip install "lifelong[hf]"') from None


class SequenceClassifier(nn.Module):
    """A Hugging Face sequence classifier as a lifelong model: token ids (B, L) -> logits (B, C), the
    attention mask from ``pad_token_id`` (positions holding it are masked out)."""

    def __init__(self, model: nn.Module, pad_token_id: int | None = None):
        super().__init__()
        self.model = model
        pad = getattr(getattr(model, "config", None), "pad_token_id", None) if pad_token_id is None else pad_token_id
        self.pad_token_id = 0 if pad is None else int(pad)

    def forward(self, input_ids: Tensor) -> Tensor:
        input_ids = input_ids.long()
        return self.model(input_ids=input_ids, attention_mask=(input_ids != self.pad_token_id).long()).logits


class LifelongCallback(transformers.TrainerCallback):
    """The step hooks of ``learner``'s strategy at the Trainer's (see the module docstring)."""

    def __init__(self, learner: Learner):
        self.learner = learner

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        b = self.learner.last_batch
        if b is None:
            raise UsageError("the Trainer's loss did not come from learner.batch(...): use LifelongTrainer, or call "
                             "learner.loss(learner.batch(input_ids, labels)) in your compute_loss")
        self.learner.before_step(b)

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.learner.last_batch is not None:
            self.learner.after_step(self.learner.last_batch)


class LifelongTrainer(transformers.Trainer):
    """``transformers.Trainer`` for one task of ``learner``'s stream per ``train()`` call."""

    def __init__(self, learner: Learner, *args: Any, **kwargs: Any):
        if not isinstance(learner, Learner):
            raise UsageError("LifelongTrainer takes a lifelong.Learner first: LifelongTrainer(cl, model=..., args=...)")
        super().__init__(*args, **kwargs)
        self.learner = learner
        self.add_callback(LifelongCallback(learner))

    def train(self, *args: Any, **kwargs: Any):
        cl = self.learner
        cl.start_task(cl.next_task)
        if cl.strategy.parameters() and self.optimizer is None:
            self.optimizer = torch.optim.AdamW(cl.parameters(), lr=self.args.learning_rate,
                                               weight_decay=self.args.weight_decay)
        out = super().train(*args, **kwargs)
        cl.optimizer = self.optimizer
        cl.end_task()
        return out

    def _get_train_sampler(self, *args: Any, **kwargs: Any):
        """A task-free stream is learned in its order: the dataset's, sequentially (joint training, the
        i.i.d. bound, keeps the Trainer's shuffled sampler)."""
        cl = self.learner
        if cl.stream.task_free and not cl.strategy.iid:
            dataset = (args[0] if args else kwargs.get("train_dataset")) or self.train_dataset
            return torch.utils.data.SequentialSampler(dataset)
        return super()._get_train_sampler(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        if not model.training:  # evaluation: the model's own loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        cl = self.learner
        x = inputs.get("input_ids")
        y = inputs.get("labels")
        if x is None or y is None:
            raise UsageError(f"LifelongTrainer needs batches with input_ids and labels, got keys {sorted(inputs)}")
        batch = cl.batch(x, y)
        loss = cl.loss(batch)
        return (loss, {"loss": loss}) if return_outputs else loss

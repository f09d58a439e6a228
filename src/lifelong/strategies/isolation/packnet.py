"""PackNet (Mallya & Lazebnik 2018, CVPR, "PackNet: Adding Multiple Tasks to a Single Network by
Iterative Pruning").

Every weight of a hidden layer has an owner: a task, or none (free). Task t trains the free weights
(those of earlier tasks get zero gradient); then, in each hidden layer separately, the ``prune``
fraction of those free weights with the smallest magnitude |w| is released (set to 0, free again for
later tasks) and the rest become task t's; the task's weights are retrained for ``retrain_epochs``
epochs with everything else fixed, and frozen. At test time task j computes with the weights owned by
tasks 0..j only (W ⊙ 1[owner ≤ j]), which never change after their task: zero forgetting, exactly.

``prune_schedule='even'`` releases 1 − 1/(T − t) of task t's weights instead, so each of T tasks owns
an equal share. Exactly ⌊fraction · n + ½⌋ weights are released per layer (a stable sort breaks ties).

Our choices where the paper leaves room: biases are not pruned; they train with the first task and stay
fixed afterwards. The output layer is not pruned either: its rows are the task-incremental heads, and a
unit's row is frozen once the task that uses it has trained. Retraining uses the run's optimizer type
and learning rate, fresh, over the task's training data in an order drawn from the strategy generator.

State: ``owner.<name>`` (uint8 per weight of each hidden layer: the task index, 255 = free) and
``tasks_done`` (the number of tasks pruned so far).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call

from ...scenarios import batches
from ...settings import Settings, setting
from ...errors import UsageError
from ..base import Context, Step, cross_entropy, tensor_bytes
from ..state import Group, Position
from .base import Isolation, capacity, check_keys, count, head_masks, mask_grads, per_task

FREE = 255


@dataclass(frozen=True)
class PackNetSettings(Settings):
    prune: float = setting(0.5, flag="prune", check=lambda v: 0 <= v < 1, must="be in [0, 1)",
                           help="fraction of a task's weights (per hidden layer) released for later tasks")
    prune_schedule: str = setting("fixed", flag="prune-schedule", choices=("fixed", "even"),
                                  help="fixed = release the prune fraction after every task; even = task t of T "
                                       "releases 1 - 1/(T - t), so every task owns an equal share")
    retrain_epochs: int = setting(1, flag="retrain-epochs", check=lambda v: v >= 0, must="be >= 0", maximum=1000,
                                  help="epochs of retraining a task's kept weights after pruning")


def prune_free(w: Tensor, owner: Tensor, task: int, fraction: float) -> Tensor:
    """The new owner map after task ``task``: among the free weights of ``w`` (owner == FREE), the
    ⌊fraction · n + ½⌋ of smallest |w| stay free, the others become ``task``'s. Ties at the threshold go
    by position (stable sort), so the count is exact."""
    free = (owner == FREE).reshape(-1).nonzero().squeeze(1)  # (n,)
    release = int(fraction * free.numel() + 0.5)
    order = torch.sort(w.detach().reshape(-1)[free].abs(), stable=True).indices
    new = owner.clone().reshape(-1)
    new[free[order[release:]]] = task
    return new.reshape(owner.shape)


class PackNet(Isolation):
    """Iterative pruning: each task owns the weights it kept; earlier tasks' weights are frozen."""

    name = "packnet"
    needs_optimizer = "its retraining after each task uses your optimizer's type and settings"
    Settings = PackNetSettings
    needs_task_because = "each task computes with its own and earlier tasks' weights"
    composable = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.owner: dict[str, Tensor] = {}
        self.tasks_done = 0
        self._masks = None  # (task, params, gradient masks)

    # ---- training --------------------------------------------------------------------------------------
    def _weights(self, ctx: Context) -> dict[str, Tensor]:
        layers = self.layers(ctx)
        return {f"{layers.names[l]}.weight": layers.layer(l).weight for l in range(layers.hidden)}

    def before_task(self, ctx: Context) -> None:
        if not self.owner:
            self.owner = {k: torch.full(w.shape, FREE, dtype=torch.uint8, device=w.device)
                          for k, w in self._weights(ctx).items()}
        self._masks = None

    def _gradient_masks(self, ctx: Context, trainable: dict[str, Tensor] | None = None):
        """(params, masks): the gradient of each parameter is multiplied by its mask (1 = trains)."""
        layers, t = self.layers(ctx), ctx.task_index
        params, masks = [], []
        weights = self._weights(ctx)
        for k, w in weights.items():
            params.append(w)
            masks.append((self.owner[k] == FREE if trainable is None else trainable[k]).to(w.dtype))
        for l in range(layers.hidden):
            b = layers.layer(l).bias
            if b is not None:
                params.append(b)
                masks.append(torch.full_like(b, float(t == 0 and self.tasks_done == 0)))
        hp, hm = head_masks(ctx, layers)
        return params + hp, masks + hm

    def before_step(self, ctx: Context, step: Step) -> None:
        self.mask_gradients(ctx)

    def after_task(self, ctx: Context) -> None:
        t, T = ctx.task_index, self.n_tasks(ctx)
        fraction = self.settings.prune if self.settings.prune_schedule == "fixed" else 1 - 1 / max(1, T - t)
        weights = self._weights(ctx)
        with torch.no_grad():
            for k, w in weights.items():
                self.owner[k] = prune_free(w, self.owner[k], t, fraction)
                w.mul_((self.owner[k] != FREE).to(w.dtype))  # released weights are 0 until a later task trains them
        self._retrain(ctx, {k: self.owner[k] == t for k in weights})
        self.tasks_done = t + 1
        self._masks = None

    def _retrain(self, ctx: Context, trainable: dict[str, Tensor]) -> None:
        epochs = self.settings.retrain_epochs
        if epochs == 0:
            return
        model = ctx.model
        params, masks = self._gradient_masks(ctx, trainable)
        if ctx.optimizer is not None:
            opt = type(ctx.optimizer)(list(model.parameters()), **ctx.optimizer.defaults)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=getattr(ctx.settings, "lr", 0.1))
        batch_size = getattr(ctx.settings, "batch_size", 128)
        was = model.training
        model.train()
        for _ in range(epochs):
            for batch in batches([ctx.task], "train", batch_size=batch_size, shuffle=True, generator=ctx.generator):
                loss = cross_entropy(ctx, model(batch.x), batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                mask_grads(params, masks)
                opt.step()
        model.train(was)
        opt.zero_grad(set_to_none=True)

    # ---- test time ---------------------------------------------------------------------------------------
    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        return per_task(lambda t, xt: self._predict_task(ctx, t, xt), x, task_ids)

    def _predict_task(self, ctx: Context, t: int, x: Tensor) -> Tensor:
        if t >= self.tasks_done:  # training now, or not trained yet: every weight there is
            return ctx.model(x)
        w = self._weights(ctx)
        masked = {k: w[k] * (self.owner[k] <= t).to(w[k].dtype) for k in w}  # W ⊙ 1[owner ≤ t]
        return functional_call(ctx.model, masked, (x,))

    # ---- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        out = {f"owner.{k}": v for k, v in self.owner.items()}
        if self.owner:
            out["tasks_done"] = torch.tensor(self.tasks_done, dtype=torch.int64)
        return out

    def check_stream(self, ctx: Context) -> None:
        """Every task keeps at least one weight of every hidden layer (else it trains and then remembers nothing)."""
        super().check_stream(ctx)
        T, s = self.n_tasks(ctx), self.settings
        for k, w in self._weights(ctx).items():
            free = w.numel()
            for t in range(T):
                fraction = s.prune if s.prune_schedule == "fixed" else 1 - 1 / max(1, T - t)
                release = int(fraction * free + 0.5)
                if free - release < 1:
                    raise UsageError(f"packnet: `prune={s.prune:g}` ({s.prune_schedule}) leaves task {t} none of the "
                                     f"{w.numel()} weights of layer {k!r}: it would learn nothing it keeps; lower `prune`"
                                     " or widen the layer (`hidden`)", params=("prune", "hidden"), owner=self.name)
                free = release

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """Which task owns each weight of the hidden layers (uint8) and the count of tasks done, from the first step on."""
        owner = {f"owner.{k}": (tuple(w.shape), torch.uint8) for k, w in self._weights(ctx).items()}
        return [Group("packnet's owner of every weight", {**owner, "tasks_done": ((), torch.int64)}, at.trained)]

    def load_state_dict(self, state: dict[str, Tensor], model) -> None:
        check_keys(self.name, state, ("owner.", "tasks_done"))
        owner = {k[6:]: v for k, v in state.items() if k.startswith("owner.")}
        if any(v.dtype != torch.uint8 for v in owner.values()):
            raise ValueError("packnet: owner maps must be uint8")
        tasks_done = int(state["tasks_done"]) if "tasks_done" in state else 0
        params = dict(model.named_parameters())
        for k, v in owner.items():
            if k not in params or tuple(params[k].shape) != tuple(v.shape):
                raise ValueError(f"packnet: owner map {k!r} {tuple(v.shape)} fits no weight of the model")
            owned = v[v != FREE]
            if owned.numel() and int(owned.max()) >= tasks_done:
                raise ValueError(f"packnet: owner map {k!r} names a task not trained yet")
        self.owner, self.tasks_done, self._masks = owner, tasks_done, None

    def capacity_report(self, ctx: Context) -> dict:
        T = self.n_tasks(ctx)
        total = count(self.owner.values())
        own = [sum(int((o == t).sum()) for o in self.owner.values()) / total for t in range(T)]
        used = [sum(own[: t + 1]) for t in range(T)]
        free = sum(int((o == FREE).sum()) for o in self.owner.values()) / total
        return capacity("weights", used, own, free, tensor_bytes(self.owner.values()), 0, count(ctx.model.parameters()))


"""Separate networks: one whole network per task, the simplest parameter isolation (the baseline of
van de Ven, Tuytelaars & Tolias 2022, "Three types of incremental learning", Nature Machine
Intelligence 4, "Separate Networks").

Task t trains a network of the model's architecture that starts from the model's initial weights θ₀ (the
weights it had when the stream began), so it is exactly what training task t alone from θ₀ gives; at
test time task t is answered by its own network. Nothing is shared, so nothing is forgotten, and the
parameter count is T times the model's (``capacity.total_parameters``); van de Ven et al. shrink each
network to keep the total comparable (100 hidden units for split MNIST: ``--hidden 100,100``).

State: ``init.<name>`` (θ₀, parameters and buffers) and ``net.<t>.<name>`` for each finished task but the
one the model holds now (task k lives in the model while it trains and after it, until task k+1 starts).
"""

from __future__ import annotations

from torch import Tensor
from torch.func import functional_call

from ..base import Context, tensor_bytes
from ..state import Group, Position, like
from .base import Isolation, capacity, check_keys, count, numbered, per_task


class Separate(Isolation):
    """One network per task, each from the model's initial weights; the task identity picks it."""

    name = "separate"
    needs_task_because = "each task has its own network"
    uses_layers = False
    composable = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init: dict[str, Tensor] = {}
        self.nets: list[dict[str, Tensor]] = []

    def before_task(self, ctx: Context) -> None:
        state = ctx.model.state_dict()
        if not self.init:
            self.init = {k: v.detach().clone() for k, v in state.items()}
        while len(self.nets) < ctx.task_index:  # the model holds task len(nets): keep it, start the next
            self.nets.append({k: v.detach().clone() for k, v in state.items()})
            ctx.model.load_state_dict(self.init)

    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor:
        return per_task(lambda t, xt: self._net(ctx, t, xt), x, task_ids)

    def _net(self, ctx: Context, t: int, x: Tensor) -> Tensor:
        if t < len(self.nets):
            return functional_call(ctx.model, self.nets[t], (x,))
        if t > len(self.nets) and self.init:  # not trained yet: its network is still θ₀
            return functional_call(ctx.model, self.init, (x,))
        return ctx.model(x)

    def state_dict(self) -> dict[str, Tensor]:
        out = {f"init.{k}": v for k, v in self.init.items()}
        for t, net in enumerate(self.nets):
            out.update({f"net.{t}.{k}": v for k, v in net.items()})
        return out

    def state_spec(self, ctx: Context, at: Position) -> list[Group]:
        """The initial weights from the first step on; the network of each task before the one training
        (kept when the next task starts)."""
        state = ctx.model.state_dict()
        n = at.done if at.started else max(at.done - 1, 0)
        return [like(state, "init.", "the initial weights each task's network starts from", at.trained),
                *(like(state, f"net.{t}.", f"the network of task {t}", True) for t in range(n))]

    def load_state_dict(self, state: dict[str, Tensor], model) -> None:
        check_keys(self.name, state, ("init.", "net."))
        init = {k[5:]: v for k, v in state.items() if k.startswith("init.")}
        nets = numbered(state, "net.", self.name)
        want = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
        for net in ([init] if init else []) + nets:
            got = {k: (tuple(v.shape), v.dtype) for k, v in net.items()}
            if got != want:
                bad = sorted(set(got) ^ set(want)) or [k for k in want if got.get(k) != want[k]]
                raise ValueError(f"separate: a stored network does not fit the model (at {bad[0]!r})")
        self.init, self.nets = init, nets

    def capacity_report(self, ctx: Context) -> dict:
        T = self.n_tasks(ctx)
        P = count(p for p in ctx.model.parameters())
        return capacity("parameters", [1 / T] * T, [1 / T] * T, None, 0,
                        tensor_bytes(self.state_dict().values()), P * T)

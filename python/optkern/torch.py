"""Drop-in `torch.optim` optimizers on optkern's fused CPU kernels.

`SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad`, `Adamax`, `Adadelta`, `NAdam`, `RAdam`, `Rprop`
and `ASGD` take the constructor arguments of `torch.optim` 2.x with the same defaults and
semantics; `Lion` those of lion-pytorch, `LAMB` those of timm, `ADOPT` and `AdEMAMix` those of
pytorch_optimizer 4.1, `AdamWScheduleFree` and `SGDScheduleFree` those of schedulefree 1.4
(with its ``train()`` / ``eval()``). They are `torch.optim.Optimizer` subclasses: parameter groups,
`add_param_group`, `zero_grad`, `step(closure)`, every `torch.optim.lr_scheduler`, and
`state_dict()` / `load_state_dict()` in torch's own layout (a checkpoint of
`torch.optim.AdamW` loads into `optkern.torch.AdamW` and the reverse).

Each `step()` updates parameters, gradients stay untouched, and state in place: every tensor
of every group goes to the crate in one call, checked first (a rejected step writes nothing),
then stepped with the GIL released on `threads` threads (default `torch.get_num_threads()`).

Options torch does not have (keyword-only, on every optimizer):

- ``threads``: the number of threads of the step (1: the calling thread).
- ``state_dtype``: the dtype of the optimizer state (default: the parameter's, as torch);
  ``torch.float32`` keeps f32 state for bf16/f16 parameters.
- ``master_weights``: for bf16/f16 parameters, keep f32 master weights in the state
  (``state[p]["master_weights"]``), step them, and write the parameter rounded from them in
  the same pass. Implies f32 state.
- ``stochastic_rounding``: an integer seed: bf16/f16 weights (without master weights) are
  rounded stochastically, reproducibly from the seed, the step and the element's position.
- ``flush_subnormals``: read and store subnormal values as zeros (see the crate's
  `Subnormals::Flush`): state that decays where gradients are zero does not stick in the
  subnormal range, where some CPUs slow down.

``foreach`` and ``fused`` are accepted and stored in the groups (so that state dicts round-trip
with torch) and change nothing: every step is fused. ``capturable=True`` and
``differentiable=True`` raise ValueError: the kernels run on the CPU outside autograd.

Under ``torch.amp.GradScaler``, the optimizer sets ``_step_supports_amp_scaling``: the scaler
hands it ``grad_scale`` and ``found_inf``, the inverse scale is folded into the kernels'
gradient read, and a step with an infinite or NaN gradient writes nothing.

Parameters that are DTensors (FSDP2's ``fully_shard``) are stepped on their local shards;
the state is created as DTensors like the parameters. For the elementwise optimizers
(all but LAMB, whose trust ratio is per tensor) sharding does not change the result.
"""
import torch

from . import _optkern

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "Adadelta", "NAdam", "RAdam",
           "Rprop", "ASGD", "ADOPT", "AdEMAMix", "AdamWScheduleFree", "SGDScheduleFree", "Lion",
           "LAMB"]

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _local(t):
    """The local shard of a DTensor, the tensor itself otherwise."""
    local = getattr(t, "_local_tensor", None)
    return t if local is None else local


def _increment_version(tensors):
    bump = getattr(torch.autograd.graph, "increment_version", None)
    if bump is not None:
        bump(tensors)
    else:  # torch before 2.2: one tensor at a time
        for t in tensors:
            torch._C._increment_version(t)


def _num(x):
    return float(x) if torch.is_tensor(x) else x


class _Optimizer(torch.optim.Optimizer):
    # The crate's name of each state buffer -> torch's key.
    _keys = {}

    def __init__(self, params, defaults, *, threads=None, state_dtype=None,
                 master_weights=False, stochastic_rounding=None, flush_subnormals=False):
        if defaults.get("capturable"):
            raise ValueError("optkern: capturable=True is for CUDA graphs; optkern steps CPU tensors")
        if defaults.get("differentiable"):
            raise ValueError("optkern: differentiable=True is not supported: the kernels run outside autograd")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"optkern: threads must be a positive integer, not {threads!r}")
        if state_dtype is not None and state_dtype not in _DTYPES:
            raise TypeError(f"optkern: state_dtype must be torch.float32, torch.bfloat16 or torch.float16, not {state_dtype}")
        if stochastic_rounding is not None and (
                isinstance(stochastic_rounding, bool) or not isinstance(stochastic_rounding, int)
                or not 0 <= stochastic_rounding < 2**64):
            raise ValueError("optkern: stochastic_rounding is a seed, an integer in [0, 2**64)")
        if master_weights and stochastic_rounding is not None:
            raise ValueError("optkern: stochastic_rounding rounds weights kept in bf16/f16; with master_weights they are kept in f32")
        if master_weights and state_dtype not in (None, torch.float32):
            raise ValueError("optkern: master_weights keeps float32 state")
        self.threads = threads
        self.state_dtype = torch.float32 if master_weights else state_dtype
        self.master_weights = bool(master_weights)
        self.stochastic_rounding = stochastic_rounding
        self.flush_subnormals = bool(flush_subnormals)
        super().__init__(params, defaults)
        self._step_supports_amp_scaling = True

    # --- what each optimizer says -------------------------------------------------------
    def _hyper(self, group):
        """(crate kind, hyperparameters by the crate's names) for a group."""
        raise NotImplementedError

    def _initial_count(self, state, group):
        """The step count of a parameter whose state has no "step" yet."""
        return 0

    def _given_step(self, state, group):
        """The crate's step number when it is not one more than the count (None: it is)."""
        return None

    def _initial(self, key, p, dtype, group):
        return torch.zeros_like(p, dtype=dtype, memory_format=torch.contiguous_format)

    # --- torch.optim.Optimizer ----------------------------------------------------------
    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        try:
            kind, hyper = self._hyper(self.param_groups[-1])
            _optkern.validate(kind, hyper)
        except Exception:
            self.param_groups.pop()
            raise

    def __setstate__(self, state):
        super().__setstate__(state)
        # Groups saved by another optimizer (or an older torch) lack some keys.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        # The kernels step contiguous tensors and count steps in float32 tensors: bring a
        # loaded state (strided views, steps saved as numbers or in float64) to that form.
        for state in self.state.values():
            for key, t in list(state.items()):
                if key == "step":
                    if type(t) is not torch.Tensor or t.dtype is not torch.float32 or t.numel() != 1:
                        state[key] = torch.tensor(float(_num(t)), dtype=torch.float32)
                elif torch.is_tensor(t) and not _local(t).is_contiguous():
                    state[key] = t.contiguous()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and float(found_inf) != 0.0:
            return loss
        grad_scale = getattr(self, "grad_scale", None)
        multiplier = None if grad_scale is None else 1.0 / float(grad_scale)

        calls = []
        stores = []  # (parameter, {key: new tensor}) to keep once stepped
        given = []  # step counters that the crate does not count (their step was given)
        written = []  # every tensor the step writes, for autograd's version counters
        state_dtype = self.state_dtype
        low = self.master_weights and (torch.bfloat16, torch.float16)
        all_state = self.state
        given_step = None if type(self)._given_step is _Optimizer._given_step else self._given_step
        for gi, group in enumerate(self.param_groups):
            kind, hyper = self._hyper(group)
            keys = self._state_keys(kind, hyper)
            entries = []
            for pi, p in enumerate(group["params"]):
                grad = p.grad
                if grad is None:
                    continue
                label = f"param_groups[{gi}] parameter {pi}"
                state = all_state.get(p)
                if state is None:
                    state = {}
                dtype = p.dtype
                want = torch.float32 if low and dtype in low else (state_dtype or dtype)
                local = getattr(p, "_local_tensor", None)
                store = None
                tensors = []
                for key in keys:
                    t = state.get(key)
                    if t is None or t.dtype is not want:
                        if t is None:
                            t = self._initial(key, p, want, group)
                        else:
                            t = t.to(dtype=want, memory_format=torch.contiguous_format, copy=True)
                        if store is None:
                            store = {}
                        store[key] = t
                    written.append(t)
                    tensors.append(t if local is None else _local(t))
                count = state.get("step")
                if type(count) is not torch.Tensor or count.dtype is not torch.float32:
                    value = self._initial_count(state, group) if count is None else float(_num(count))
                    count = torch.tensor(float(value), dtype=torch.float32)
                    if store is None:
                        store = {}
                    store["step"] = count
                written.append(count)
                n = None if given_step is None else given_step(state, group)
                if n is not None:
                    given.append(count)
                    step = n
                else:
                    step = count
                if low and dtype in low:
                    master = state.get("master_weights")
                    if master is None or master.dtype is not torch.float32 or master.shape != p.shape:
                        master = p.detach().to(torch.float32, copy=True)
                        if store is None:
                            store = {}
                        store["master_weights"] = master
                    weights, copy = master, p
                    written.append(master)
                else:
                    weights, copy = p, None
                written.append(p)
                if local is None:
                    entries.append((label, weights, grad, tensors, copy, step))
                else:
                    entries.append((label, _local(weights), _local(grad), tensors,
                                    None if copy is None else _local(copy), step))
                if store is not None:
                    stores.append((p, store))
            if entries:
                calls.append((kind, hyper, entries))
        if not calls:
            return loss
        self._check_calls(calls)
        threads = self.threads or torch.get_num_threads()
        _optkern.step(calls, threads=threads, grad_scale=multiplier,
                      flush_subnormals=self.flush_subnormals, seed=self.stochastic_rounding,
                      index_base=0)
        # The kernels wrote through data_ptr(): tell autograd, as torch's in-place operations
        # do, so that a tensor saved for a backward pass and changed since is reported.
        _increment_version(written)
        # Stepped: keep the new state; count the steps the crate did not count.
        for p, store in stores:
            all_state[p].update(store)
        for count in given:
            count.add_(1.0)
        self._after_step()
        return loss

    def _state_keys(self, kind, hyper):
        """torch's names of the state tensors the crate's config for a group uses."""
        cache = self.__dict__.setdefault("_keys_cache", {})
        signature = (kind, tuple(hyper.items()))
        keys = cache.get(signature)
        if keys is None:
            keys = [self._keys[n] for n in _optkern.state_buffers(kind, hyper)]
            if len(cache) > 64:
                cache.clear()
            cache[signature] = keys
        return keys

    def _check_calls(self, calls):
        pass

    def _after_step(self):
        pass


def _check_common(lr, weight_decay):
    if not 0.0 <= _num(lr):
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def _check_betas(betas, eps):
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= _num(betas[0]) < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= _num(betas[1]) < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")


class SGD(_Optimizer):
    """`torch.optim.SGD`: plain, heavy-ball or Nesterov momentum, with dampening, L2 weight
    decay and maximize; the momentum buffer is the gradient on its first step.

    The state holds ``momentum_buffer`` (with momentum) as torch does, and a ``step``
    count torch's SGD does not keep (used by stochastic rounding; torch ignores it)."""

    _keys = {"velocity": "momentum_buffer"}

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None, **options):
        _check_common(lr, weight_decay)
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        h = dict(lr=_num(g["lr"]), weight_decay=_num(g["weight_decay"]), maximize=g["maximize"])
        if g["momentum"] == 0:
            return "sgd", h
        h.update(momentum=g["momentum"], dampening=g["dampening"], nesterov=g["nesterov"])
        return "momentum", h

    # The crate's step 1 is torch's first use of the buffer: buffer = gradient.
    def _initial_count(self, state, group):
        # A state saved by torch.optim.SGD has a buffer and no count.
        return 1 if state.get("momentum_buffer") is not None else 0

    def _given_step(self, state, group):
        # Momentum turned on after steps without it: the buffer starts now.
        if group["momentum"] != 0 and state.get("momentum_buffer") is None:
            count = state.get("step")
            if count is not None and float(_num(count)) != 0.0:
                return 1
        return None


class Adam(_Optimizer):
    """`torch.optim.Adam` (and AdamW with ``decoupled_weight_decay=True``), AMSGrad, maximize."""

    _keys = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq"}
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=None, **options):
        _check_common(lr, weight_decay)
        _check_betas(betas, eps)
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        b1, b2 = g["betas"]
        return "adam", dict(lr=_num(g["lr"]), beta1=_num(b1), beta2=_num(b2), eps=g["eps"],
                            weight_decay=g["weight_decay"],
                            decoupled=g.get("decoupled_weight_decay", self._decoupled),
                            amsgrad=g["amsgrad"], maximize=g["maximize"])


class AdamW(Adam):
    """`torch.optim.AdamW`: Adam with decoupled weight decay (default 1e-2)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None, **options):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True, **options)


class RMSprop(_Optimizer):
    """`torch.optim.RMSprop`: centered or not, with momentum, L2 weight decay, maximize."""

    _keys = {"square_avg": "square_avg", "grad_avg": "grad_avg",
             "momentum_buffer": "momentum_buffer"}

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False, **options):
        _check_common(lr, weight_decay)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, capturable=capturable,
                        foreach=foreach, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        return "rmsprop", dict(lr=_num(g["lr"]), alpha=g["alpha"], eps=g["eps"],
                               weight_decay=g["weight_decay"], momentum=g["momentum"],
                               centered=g["centered"], maximize=g["maximize"])


class Adagrad(_Optimizer):
    """`torch.optim.Adagrad`: lr decay, initial accumulator value, L2 weight decay, maximize.
    As torch, the state (``step`` 0, ``sum`` filled with ``initial_accumulator_value``) is
    created with the optimizer."""

    _keys = {"sum": "sum"}

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, foreach=None, *, maximize=False,
                 differentiable=False, fused=None, **options):
        _check_common(lr, weight_decay)
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, **options)
        for group in self.param_groups:
            for p in group["params"]:
                dtype = self._state_dtype_for(p)
                self.state[p]["step"] = torch.tensor(0.0, dtype=torch.float32)
                self.state[p]["sum"] = self._initial("sum", p, dtype, group)

    def _state_dtype_for(self, p):
        if p.dtype not in _DTYPES:
            return p.dtype
        if self.master_weights and p.dtype != torch.float32:
            return torch.float32
        return self.state_dtype or p.dtype

    def _initial(self, key, p, dtype, group):
        return torch.full_like(p, group["initial_accumulator_value"], dtype=dtype,
                               memory_format=torch.contiguous_format)

    def _hyper(self, g):
        return "adagrad", dict(lr=_num(g["lr"]), lr_decay=g["lr_decay"], eps=g["eps"],
                               weight_decay=g["weight_decay"],
                               initial_accumulator_value=g["initial_accumulator_value"],
                               maximize=g["maximize"])


class Adamax(_Optimizer):
    """`torch.optim.Adamax`: the infinity-norm Adam, L2 weight decay, maximize."""

    _keys = {"m": "exp_avg", "u": "exp_inf"}

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False,
                 **options):
        _check_common(lr, weight_decay)
        _check_betas(betas, eps)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize, differentiable=differentiable,
                        capturable=capturable)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        b1, b2 = g["betas"]
        return "adamax", dict(lr=_num(g["lr"]), beta1=b1, beta2=b2, eps=g["eps"],
                              weight_decay=g["weight_decay"], maximize=g["maximize"])


class Adadelta(_Optimizer):
    """`torch.optim.Adadelta`: eps inside both roots, L2 weight decay, maximize. State:
    ``square_avg``, ``acc_delta`` (and ``step``)."""

    _keys = {"square_avg": "square_avg", "acc_delta": "acc_delta"}

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False, **options):
        _check_common(lr, weight_decay)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, foreach=foreach,
                        capturable=capturable, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        return "adadelta", dict(lr=_num(g["lr"]), rho=g["rho"], eps=g["eps"],
                                weight_decay=g["weight_decay"], maximize=g["maximize"])


class NAdam(_Optimizer):
    """`torch.optim.NAdam`: Adam with Nesterov momentum and its schedule
    (``momentum_decay``), L2 or decoupled weight decay (``decoupled_weight_decay=True``:
    NAdamW), maximize. State: ``exp_avg``, ``exp_avg_sq``, ``step`` and, as torch keeps it,
    ``mu_product``: the crate computes the product from the step count (in float64, from the
    hyperparameters), so a ``mu_product`` loaded from a state dict is replaced by the crate's
    value after the next step; once below 2**-80 it is no longer multiplied out (it no longer
    changes a step), where torch's float32 product goes on towards 0."""

    _keys = {"m": "exp_avg", "v": "exp_avg_sq"}

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False, **options):
        _check_common(lr, weight_decay)
        _check_betas(betas, eps)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, foreach=foreach,
                        maximize=maximize, capturable=capturable,
                        differentiable=differentiable)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        b1, b2 = g["betas"]
        return "nadam", dict(lr=_num(g["lr"]), beta1=b1, beta2=b2, eps=g["eps"],
                             momentum_decay=g["momentum_decay"],
                             weight_decay=g["weight_decay"],
                             decoupled=g["decoupled_weight_decay"], maximize=g["maximize"])

    def _after_step(self):
        for group in self.param_groups:
            hyper = self._hyper(group)[1]
            for p in group["params"]:
                state = self.state.get(p)
                if not state or "step" not in state:
                    continue
                product = _optkern.nadam_mu_product(hyper, int(state["step"]))
                current = state.get("mu_product")
                if type(current) is torch.Tensor and current.dtype is torch.float32 and current.numel() == 1:
                    current.fill_(product)
                else:
                    state["mu_product"] = torch.tensor(product, dtype=torch.float32)


class RAdam(_Optimizer):
    """`torch.optim.RAdam`: Adam with the variance of its adaptive step rectified (a
    momentum step while ``rho_t <= 5``: the first five steps at ``beta2 = 0.999``), L2 or
    decoupled weight decay (``decoupled_weight_decay=True``: RAdamW), maximize. State:
    ``exp_avg``, ``exp_avg_sq`` (and ``step``)."""

    _keys = {"m": "exp_avg", "v": "exp_avg_sq"}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False, **options):
        _check_common(lr, weight_decay)
        _check_betas(betas, eps)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, foreach=foreach,
                        maximize=maximize, capturable=capturable,
                        differentiable=differentiable)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        b1, b2 = g["betas"]
        return "radam", dict(lr=_num(g["lr"]), beta1=b1, beta2=b2, eps=g["eps"],
                             weight_decay=g["weight_decay"],
                             decoupled=g["decoupled_weight_decay"], maximize=g["maximize"])


class Rprop(_Optimizer):
    """`torch.optim.Rprop`: a step size per element, grown by ``etas[1]`` while the gradient
    keeps its sign and shrunk by ``etas[0]`` when it flips, within ``step_sizes``; ``lr`` is
    the initial step size (as in torch, a learning-rate schedule changes nothing after the
    first step). State: ``prev``, ``step_size`` (and ``step``)."""

    _keys = {"prev": "prev", "step_size": "step_size"}

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *,
                 capturable=False, foreach=None, maximize=False, differentiable=False,
                 **options):
        if not 0.0 <= _num(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes, foreach=foreach,
                        maximize=maximize, differentiable=differentiable,
                        capturable=capturable)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        (minus, plus), (lo, hi) = g["etas"], g["step_sizes"]
        return "rprop", dict(lr=_num(g["lr"]), eta_minus=minus, eta_plus=plus, step_min=lo,
                             step_max=hi, maximize=g["maximize"])


class ASGD(_Optimizer):
    """`torch.optim.ASGD`: SGD with the decaying step size ``eta`` and the shrinkage
    ``lambd``, and the average of the weights from step ``t0`` on in ``state[p]["ax"]``
    (which never feeds back into the weights), L2 weight decay, maximize. State: ``ax``,
    ``step`` and, as torch keeps them, ``eta`` and ``mu`` (the values of the next step, from
    the crate's schedule; the crate computes each step's own from the step count and the
    group's ``lr`` of that step, where torch uses those computed at the step before)."""

    _keys = {"ax": "ax"}

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0,
                 foreach=None, maximize=False, differentiable=False, capturable=False,
                 **options):
        _check_common(lr, weight_decay)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize, differentiable=differentiable,
                        capturable=capturable)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        return "asgd", dict(lr=_num(g["lr"]), lambd=g["lambd"], alpha=g["alpha"], t0=g["t0"],
                            weight_decay=g["weight_decay"], maximize=g["maximize"])

    def _after_step(self):
        for group in self.param_groups:
            hyper = self._hyper(group)[1]
            for p in group["params"]:
                state = self.state.get(p)
                if not state or "step" not in state:
                    continue
                eta, mu = _optkern.asgd_schedule(hyper, int(state["step"]) + 1)
                for key, value in (("eta", eta), ("mu", mu)):
                    current = state.get(key)
                    if type(current) is torch.Tensor and current.dtype is torch.float32 and current.numel() == 1:
                        current.fill_(value)
                    else:
                        state[key] = torch.tensor(value, dtype=torch.float32)


class _GroupStep:
    """Step counting for optimizers whose library counts steps per group (pytorch_optimizer,
    timm): a state saved by the library has no per-parameter ``step``, so a parameter with a
    state but no count takes the group's; after each step the group's ``step`` is the
    largest count of its parameters."""

    def _initial_count(self, state, group):
        if any(k in state for k in self._keys.values()):
            return int(group.get("step", 0))
        return 0

    def _after_step(self):
        for group in self.param_groups:
            steps = [self.state[p]["step"] for p in group["params"] if "step" in self.state.get(p, {})]
            if steps:
                group["step"] = int(max(float(s) for s in steps))


def _adopt_default_clip(step):
    """ADOPT's default ``clip_lambda``: ``step ** 0.25`` (the crate computes it)."""
    return step ** 0.25


def _check_unmodelled(name, **options):
    for key, value in options.items():
        if value:
            raise ValueError(f"optkern: {name}'s {key}=True is not supported")


class ADOPT(_GroupStep, _Optimizer):
    """pytorch_optimizer's `ADOPT`: the gradient normalized by the second moment of the step
    before, clipped to ``step ** 0.25`` (the default ``clip_lambda``; ``None`` for no clip;
    another function raises ValueError), then averaged; L2 or decoupled weight decay
    (``weight_decouple=True``), maximize. Step 1 only sets ``exp_avg_sq``. State:
    ``exp_avg``, ``exp_avg_sq`` (and ``step``; the group's ``step`` as the library keeps it).
    Unlike the library, the gradients are left as they are (it negates them in place to
    maximize and adds the L2 term into them)."""

    _keys = {"m": "exp_avg", "v": "exp_avg_sq"}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.9999), clip_lambda=_adopt_default_clip,
                 weight_decay=0.0, weight_decouple=False, fixed_decay=False, foreach=None,
                 eps=1e-6, maximize=False, cautious=False, stable_adamw=False, **options):
        _check_common(lr, weight_decay)
        _check_betas(betas, eps)
        _check_unmodelled("ADOPT", fixed_decay=fixed_decay, cautious=cautious,
                          stable_adamw=stable_adamw)
        if clip_lambda is not None and clip_lambda is not _adopt_default_clip:
            raise ValueError("optkern: ADOPT's clip_lambda must be the default (step ** 0.25) or None")
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay,
                        weight_decouple=weight_decouple, fixed_decay=fixed_decay, eps=eps,
                        foreach=foreach, maximize=maximize, clip=clip_lambda is not None)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        b1, b2 = g["betas"]
        return "adopt", dict(lr=_num(g["lr"]), beta1=b1, beta2=b2, eps=g["eps"],
                             weight_decay=g["weight_decay"], decoupled=g["weight_decouple"],
                             maximize=g["maximize"], clip=g["clip"])


class AdEMAMix(_GroupStep, _Optimizer):
    """pytorch_optimizer's `AdEMAMix`: Adam with a slow average of the gradient (``betas[2]``,
    weight ``alpha``, not bias-corrected) added to the numerator, the warm-up of ``alpha`` and
    ``beta3`` over ``t_alpha_beta3`` steps, L2 or decoupled weight decay
    (``weight_decouple=True``), maximize. State: ``exp_avg``, ``exp_avg_sq``,
    ``exp_avg_slow`` (and ``step``; the group's ``step`` as the library keeps it). The
    gradients are left as they are."""

    _keys = {"m": "exp_avg", "v": "exp_avg_sq", "slow": "exp_avg_slow"}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999, 0.9999), weight_decay=0.0,
                 weight_decouple=False, fixed_decay=False, alpha=5.0, t_alpha_beta3=None,
                 eps=1e-8, maximize=False, foreach=None, cautious=False, stable_adamw=False,
                 **options):
        _check_common(lr, weight_decay)
        if len(betas) != 3:
            raise ValueError(f"Invalid betas: AdEMAMix takes three, not {betas}")
        _check_betas(betas[:2], eps)
        if not 0.0 <= _num(betas[2]) < 1.0:
            raise ValueError(f"Invalid beta parameter at index 2: {betas[2]}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        _check_unmodelled("AdEMAMix", fixed_decay=fixed_decay, cautious=cautious,
                          stable_adamw=stable_adamw)
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay,
                        weight_decouple=weight_decouple, fixed_decay=fixed_decay, alpha=alpha,
                        t_alpha_beta3=t_alpha_beta3, eps=eps, maximize=maximize,
                        foreach=foreach)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        b1, b2, b3 = g["betas"]
        return "ademamix", dict(lr=_num(g["lr"]), beta1=b1, beta2=b2, beta3=b3,
                                alpha=g["alpha"], t_alpha_beta3=g["t_alpha_beta3"],
                                eps=g["eps"], weight_decay=g["weight_decay"],
                                decoupled=g["weight_decouple"], maximize=g["maximize"])


class _ScheduleFree:
    """What schedulefree's classes share: the parameters hold ``y`` while training, the
    state ``z``; ``eval()`` turns them into the average ``x`` and ``train()`` back, as
    ``p.lerp_(z, 1 - 1/b)`` and ``p.lerp_(z, 1 - b)``, the library's own operations (with
    master weights, on the f32 master weights, then copied into the parameter). As the
    library, a new optimizer is in eval mode and ``step()`` refuses to run until ``train()``
    is called. The group counts steps in ``k`` and keeps the library's ``lr_max``,
    ``weight_sum`` and ``scheduled_lr``, so that state dicts load both ways; the crate
    computes the averaging weights from the learning rate and ``k`` (the same numbers for a
    run whose learning rate does not change: a schedule-free run has no schedule)."""

    def _beta(self, group):
        raise NotImplementedError

    def _given_step(self, state, group):
        return int(group["k"]) + 1

    def _initial(self, key, p, dtype, group):
        if key == "z":  # z starts as the weights (the crate reads it from step 2 on)
            return p.detach().to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)
        return super()._initial(key, p, dtype, group)

    @torch.no_grad()
    def step(self, closure=None):
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError("optkern: the optimizer was not in train mode when step was called: "
                               "call optimizer.train() before training and optimizer.eval() "
                               "before evaluating, as with schedulefree")
        found_inf = getattr(self, "found_inf", None)
        skipped = found_inf is not None and float(found_inf) != 0.0
        self._counted = False
        loss = super().step(closure)
        if not skipped and not self._counted:  # no parameter had a gradient
            self._after_step()
        return loss

    def _after_step(self):
        self._counted = True
        for group in self.param_groups:
            k = int(group["k"])
            warmup = group["warmup_steps"]
            lr = _num(group["lr"]) * ((k + 1) / warmup if k < warmup else 1.0)
            group["scheduled_lr"] = lr
            lr_max = group["lr_max"] = max(lr, group["lr_max"])
            group["weight_sum"] = group["weight_sum"] + ((k + 1) ** group["r"]) * (
                lr_max ** group["weight_lr_power"])
            group["k"] = k + 1

    @torch.no_grad()
    def eval(self):
        """The parameters hold ``x``, the weights to evaluate."""
        for group in self.param_groups:
            if group["train_mode"]:
                self._switch(group, 1.0 - 1.0 / self._beta(group))
                group["train_mode"] = False

    @torch.no_grad()
    def train(self):
        """The parameters hold ``y``, the weights to train."""
        for group in self.param_groups:
            if not group["train_mode"]:
                self._switch(group, 1.0 - self._beta(group))
                group["train_mode"] = True

    def _switch(self, group, weight):
        for p in group["params"]:
            state = self.state.get(p, {})
            z = state.get("z")
            if z is None:
                continue
            master = state.get("master_weights")
            if self.master_weights and master is not None and master.shape == p.shape:
                master.lerp_(z.to(master.dtype), weight)
                p.copy_(master)
            else:
                p.lerp_(z.to(p.dtype), weight)


class AdamWScheduleFree(_ScheduleFree, _Optimizer):
    """schedulefree's `AdamWScheduleFree` (the default, memory-efficient class): Adam's second
    moment normalizes the gradient, the weight decay is added at ``y`` after it, warm-up
    ``warmup_steps``, averaging weights ``t^r * lr_max^weight_lr_power``. State: ``z``,
    ``exp_avg_sq`` (and a ``step`` count the library does not keep). The gradients are left as
    they are (the library divides them in place). See ``_ScheduleFree`` for ``train()`` and
    ``eval()``."""

    _keys = {"z": "z", "v": "exp_avg_sq"}

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0, foreach=None, **options):
        _check_common(lr, weight_decay)
        _check_betas(betas, eps)
        defaults = dict(lr=lr, betas=betas, eps=eps, r=r, k=0, warmup_steps=warmup_steps,
                        train_mode=False, weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0,
                        weight_lr_power=weight_lr_power, weight_decay=weight_decay,
                        foreach=foreach)
        super().__init__(params, defaults, **options)

    def _beta(self, group):
        return _num(group["betas"][0])

    def _hyper(self, g):
        b1, b2 = g["betas"]
        return "schedulefree_adamw", dict(
            lr=_num(g["lr"]), beta1=_num(b1), beta2=_num(b2), eps=g["eps"],
            weight_decay=g["weight_decay"], decoupled=True, warmup_steps=g["warmup_steps"],
            r=g["r"], weight_lr_power=g["weight_lr_power"])


class SGDScheduleFree(_ScheduleFree, _Optimizer):
    """schedulefree's `SGDScheduleFree` (the default, memory-efficient class): the weight
    decay is added to the gradient at ``y``; warm-up and averaging weights as
    ``AdamWScheduleFree``. State: ``z`` (and a ``step`` count). The gradients are left as they
    are (the library adds the decay into them)."""

    _keys = {"z": "z"}

    def __init__(self, params, lr=1.0, momentum=0.9, weight_decay=0, warmup_steps=0, r=0.0,
                 weight_lr_power=2, foreach=None, **options):
        _check_common(lr, weight_decay)
        if momentum <= 0 or momentum >= 1:
            raise ValueError(f"Momentum must be between 0 and 1 exclusive: {momentum}")
        defaults = dict(lr=lr, momentum=momentum, r=r, k=0, warmup_steps=warmup_steps,
                        train_mode=False, weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0,
                        weight_lr_power=weight_lr_power, weight_decay=weight_decay,
                        foreach=foreach)
        super().__init__(params, defaults, **options)

    def _beta(self, group):
        return group["momentum"]

    def _hyper(self, g):
        return "schedulefree_sgd", dict(
            lr=_num(g["lr"]), momentum=g["momentum"], weight_decay=g["weight_decay"],
            decoupled=False, warmup_steps=g["warmup_steps"], r=g["r"],
            weight_lr_power=g["weight_lr_power"])


class Lion(_Optimizer):
    """lion-pytorch's `Lion(params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0)`: the sign
    of an interpolated momentum, decoupled weight decay. State: ``exp_avg`` (and ``step``)."""

    _keys = {"m": "exp_avg"}

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
                 decoupled_weight_decay=False, use_triton=False, **options):
        _check_common(lr, weight_decay)
        _check_betas(betas, 0.0)
        if decoupled_weight_decay:
            raise ValueError("optkern: Lion's decoupled_weight_decay=True (decay not scaled by lr) is not supported")
        if use_triton:
            raise ValueError("optkern: use_triton=True is for CUDA; optkern steps CPU tensors")
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        b1, b2 = g["betas"]
        return "lion", dict(lr=_num(g["lr"]), beta1=b1, beta2=b2,
                            weight_decay=g["weight_decay"], decoupled=True)


class LAMB(_Optimizer):
    """timm's `Lamb`: Adam-style moments with a per-tensor trust ratio, gradient clipping by
    the global norm (``max_grad_norm``, default 1.0), L2 or decoupled weight decay.

    The clipping uses the norm of all the gradients of the optimizer, so every parameter
    with a gradient must be in one call: one group, one step count and one dtype setup
    (ValueError otherwise) when ``max_grad_norm`` is set."""

    _keys = {"m": "exp_avg", "v": "exp_avg_sq"}

    def __init__(self, params, lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-6,
                 weight_decay=0.01, grad_averaging=True, max_grad_norm=1.0, trust_clip=False,
                 always_adapt=False, caution=False, decoupled_decay=False, **options):
        _check_common(lr, weight_decay)
        _check_betas(betas, eps)
        if caution:
            raise ValueError("optkern: LAMB's caution=True is not supported")
        defaults = dict(lr=lr, bias_correction=bias_correction, betas=betas, eps=eps,
                        weight_decay=weight_decay, grad_averaging=grad_averaging,
                        max_grad_norm=max_grad_norm, trust_clip=trust_clip,
                        always_adapt=always_adapt, caution=caution,
                        decoupled_decay=decoupled_decay)
        super().__init__(params, defaults, **options)

    def _hyper(self, g):
        b1, b2 = g["betas"]
        return "lamb", dict(lr=_num(g["lr"]), beta1=b1, beta2=b2, eps=g["eps"],
                            weight_decay=g["weight_decay"], decoupled=g["decoupled_decay"],
                            bias_correction=g["bias_correction"],
                            grad_averaging=g["grad_averaging"],
                            max_grad_norm=g["max_grad_norm"], trust_clip=g["trust_clip"],
                            always_adapt=g["always_adapt"])

    def _initial_count(self, state, group):
        # timm counts steps per group; a state saved by timm has no per-parameter count.
        if state.get("exp_avg") is not None:
            return int(group.get("step", 0))
        return 0

    def _check_calls(self, calls):
        clipping = [c for c in calls if c[1]["max_grad_norm"] is not None]
        if clipping and len(calls) > 1:
            raise ValueError("optkern: LAMB with max_grad_norm clips by the norm of all the gradients: "
                             "every parameter with a gradient must be in one group")

    def _after_step(self):
        for group in self.param_groups:
            steps = [self.state[p]["step"] for p in group["params"] if "step" in self.state.get(p, {})]
            if steps:
                group["step"] = int(max(float(s) for s in steps))

"""Self-training loop: a student segmentation net on pseudo labels or sparse labels, resumable to
the bit, DDP-ready.

Loss on pseudo labels: cross-entropy on the pseudo labels (255 ignored), plus ``soft_weight`` times the cross-entropy
with the stored soft labels (``pseudo-label --soft``), plus, with ``apro_weight > 0``, APro's
soft-label loss on the student's own prediction: the targets are ``clipapro.apro`` of the detached
softmax, guided by the (augmented) input image, and the loss is their cross-entropy with the
student's log-probabilities (no gradient flows through the targets). SGD with momentum and the
"poly" schedule (lr * (1 - step/steps)^0.9, the DeepLab / mmsegmentation default).

Loss on sparse labels (``config.sparse``: scribbles or points, see :mod:`clipapro.pseudo.sparse`):
partial cross-entropy + APro soft-label loss (APro paper, Table 2 setting), i.e. the cross-entropy
averaged over the labelled pixels only (255 = unlabelled contributes nothing, not even to the mean),
plus ``apro_weight`` times :class:`clipapro.adapters.points.AProSoftLabelLoss` on the student's own
prediction: targets are APro's global and local propagation of its detached softmax, with the
labelled pixels clamped to their one-hot labels, guided by the augmented image (``apro_options`` are
that class's options). ``apro_ramp`` ramps the APro weight in linearly over the first steps (both paths).

Outputs in ``OUT``: ``config.json``, ``log.jsonl`` (loss and lr every ``log_every`` steps, eval
scores), ``checkpoints/step_*.pt``, and at the end ``model_final.pt`` and ``metrics.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from clipapro.distributed import StopSignal, all_reduce_sum, barrier, dist_info
from clipapro.io import IGNORE_INDEX, atomic_path, write_json_atomic
from clipapro.pseudo import checkpoint as ckpt
from clipapro.pseudo.evaluate import evaluate_student
from clipapro.pseudo.labels import config_hash
from clipapro.pseudo.runloop import JsonLog, seed_everything, start_run
from clipapro.pseudo.student import create_student
from clipapro.pseudo.trainset import PseudoLabelDataset, epoch_batches, steps_per_epoch

__all__ = ["TrainConfig", "apro_soft_loss", "online_apro_loss", "train_student", "training_loss"]

#: Fields that only steer a run (when to stop, log, save); changing them keeps a checkpoint usable.
RUN_CONTROL = ("stop_at", "eval_every", "ckpt_every", "log_every", "workers", "eval_limit", "progress")


#: Fields added after the first release, with their defaults.
_NEW_FIELDS = {"sparse": None, "apro_ramp": 0}


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in ``config.json`` and in checkpoints)."""

    num_classes: int
    student: str = "deeplabv3_resnet101"
    backbone_weights: str | None = None
    student_options: dict = field(default_factory=dict)
    steps: int = 20000
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    crop_size: tuple = (512, 512)
    scale_range: tuple = (0.5, 2.0)
    flip: bool = True
    apro_weight: float = 0.0
    soft_weight: float = 0.0
    apro_options: dict = field(default_factory=dict)
    amp: bool = True  # used on CUDA only
    seed: int = 0
    pseudo_hash: str | None = None
    sparse: dict | None = None  # SparseLabels.as_config(): kind, source, point_radius, content hash
    apro_ramp: int = 0  # steps over which the APro weight rises linearly from 0 (0: full weight at once)
    stop_at: int | None = None
    eval_every: int = 0
    ckpt_every: int = 1000
    log_every: int = 50
    workers: int = 0
    eval_limit: int | None = None
    progress: bool = True

    def identity(self) -> dict:
        """The fields that must match for a checkpoint to be resumed (run-control fields excluded)."""
        d = asdict(self)
        d["crop_size"], d["scale_range"] = list(self.crop_size), list(self.scale_range)
        for key in _NEW_FIELDS:  # at their defaults they are left out, so older checkpoints still resume
            if d[key] == _NEW_FIELDS[key]:
                del d[key]
        if d.get("sparse"):  # where the labels live may change; their content may not
            d["sparse"] = {k: v for k, v in d["sparse"].items() if k != "source"}
        return {k: v for k, v in d.items() if k not in RUN_CONTROL}


def apro_soft_loss(logits: torch.Tensor, images: torch.Tensor, **apro_options) -> torch.Tensor:
    """APro soft-label loss: cross-entropy of ``logits`` (B, K, H, W) with ``clipapro.apro`` targets
    computed from their own detached softmax, guided by ``images`` (B, 3, H, W) in [0, 1].

    Example:
        >>> z = torch.randn(1, 3, 8, 8, requires_grad=True)
        >>> apro_soft_loss(z, torch.rand(1, 3, 8, 8)).backward()
    """
    import clipapro

    probs = torch.softmax(logits.detach().float(), 1).cpu()
    targets = clipapro.apro(probs, images.detach().float().cpu(), **apro_options).to(logits.device)
    return -(targets * F.log_softmax(logits.float(), 1)).sum(1).mean()



def train_student(config: TrainConfig, train_dataset, *, pseudo_dir, out_dir, val_dataset=None,
                  device="cpu", resume: bool = True) -> dict:
    """Train a student on ``train_dataset`` images with labels from ``pseudo_dir`` (None: the
    dataset's own masks, or the sparse labels of ``config.sparse``) and write checkpoints and logs
    to ``out_dir``.

    Resumes from the newest checkpoint in ``out_dir`` when ``resume`` is set. ``config.stop_at``
    stops early after that step (with a checkpoint); so does SIGTERM/SIGUSR1 (preemption), after the
    step in flight (``result["preempted"]``). Under torchrun (process
    group initialised by the caller) the model is wrapped in DistributedDataParallel.

    Returns:
        dict with ``step``, ``last_loss`` and the last evaluation (``eval``) if any.

    Example:
        >>> # train_student(TrainConfig(num_classes=21), voc_train, pseudo_dir="pl", out_dir="run")
    """
    info = dist_info()
    device = torch.device(device)
    out_dir = Path(out_dir)
    ident = config.identity()
    chash = config_hash(ident)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "config.json", {"config": asdict(config), "config_hash": chash})
    seed_everything(config.seed + info.rank)

    from clipapro.pseudo.sparse import SparseLabels

    sparse = SparseLabels.from_config(config.sparse)
    if sparse is not None and pseudo_dir is not None:
        raise ValueError("config.sparse and pseudo_dir are exclusive: train on sparse labels or pseudo labels")
    data = PseudoLabelDataset(train_dataset, pseudo_dir, crop_size=config.crop_size,
                              scale_range=config.scale_range, flip=config.flip, seed=config.seed,
                              soft=config.soft_weight > 0, sparse=sparse)
    aux = online_apro_loss(config)
    per_epoch = steps_per_epoch(len(data), config.batch_size, info.world_size)
    torch.manual_seed(config.seed)  # same initial weights on every rank
    model = create_student(config.student, config.num_classes, backbone_weights=config.backbone_weights,
                           **config.student_options)
    model.to(device)
    if info.distributed and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    total, power = config.steps, config.poly_power
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / total) ** power)
    use_amp = bool(config.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    step, net = start_run(out_dir, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                          config_hash=chash, seed=config.seed, info=info, device=device, resume=resume)
    stop = min(total, config.stop_at) if config.stop_at is not None else total
    log = JsonLog(out_dir / "log.jsonl", enabled=info.is_main)
    result = {"step": step, "last_loss": None, "eval": None, "preempted": False}
    signals = StopSignal()
    from tqdm import tqdm

    bar = tqdm(total=stop, initial=step, unit="step", disable=not (config.progress and info.is_main),
               desc="train", dynamic_ncols=True)
    net.train()
    running, count, t0 = torch.zeros(2, dtype=torch.float64, device=device), 0, time.perf_counter()
    preempted = False
    try:
        while step < stop:
            epoch, offset = divmod(step, per_epoch)
            batches = epoch_batches(len(data), epoch=epoch, seed=config.seed, batch_size=config.batch_size,
                                    rank=info.rank, world_size=info.world_size)[offset:]
            # a private generator: creating a loader mid-epoch (on resume) must not draw from the global RNG
            loader = torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=config.workers,
                                                 pin_memory=device.type == "cuda",
                                                 generator=torch.Generator().manual_seed(config.seed + epoch))
            for batch in loader:
                images, labels, *soft = (t.to(device, non_blocking=True) for t in batch)
                loss, ce = _train_step(net, images, labels, soft[0] if soft else None, optimizer, scaler, config,
                                       use_amp, aux=aux, apro_weight=_apro_weight(config, step))
                scheduler.step()
                step += 1
                running += torch.stack([loss.detach().double(), ce.detach().double()])
                count += 1
                bar.update(1)
                if step % config.log_every == 0 or step == stop:
                    mean = all_reduce_sum(running.clone()) / (count * info.world_size)
                    result["last_loss"] = float(mean[0])
                    log.write(step=step, loss=float(mean[0]), ce=float(mean[1]), lr=scheduler.get_last_lr()[0],
                              steps_per_s=count / (time.perf_counter() - t0))
                    bar.set_postfix(loss=f"{float(mean[0]):.4f}")
                    running.zero_()
                    count, t0 = 0, time.perf_counter()
                preempted = signals.any_rank(device)
                if preempted or (config.ckpt_every and (step % config.ckpt_every == 0 or step == stop)):
                    ckpt.save_checkpoint(out_dir, step=step, model=model, optimizer=optimizer,
                                         scheduler=scheduler, scaler=scaler, config=ident, config_hash=chash,
                                         is_main=info.is_main)
                    barrier()
                due = config.eval_every and (step % config.eval_every == 0 or step == total)
                if val_dataset is not None and due and not preempted:
                    # the evaluation's DataLoader draws from the global RNG: keep the training stream
                    # (dropout) as checkpointed, or a run resumed from this step would diverge
                    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                        scores = evaluate_student(model, val_dataset, num_classes=config.num_classes,
                                                  device=device, limit=config.eval_limit).as_dict()  # percent
                    result["eval"] = scores
                    log.write(step=step, eval_mIoU=scores["mIoU"], eval_aAcc=scores["aAcc"])
                if step >= stop or preempted:
                    break
            if preempted:
                result["preempted"] = True
                log.write(step=step, preempted=True)
                break
    finally:
        signals.restore()
    bar.close()
    result["step"] = step
    if step >= total and info.is_main:
        net_ = model.module if hasattr(model, "module") else model
        with_meta = {"model": net_.state_dict(), "student": config.student, "num_classes": config.num_classes,
                     "config": ident, "config_hash": chash}
        with atomic_path(out_dir / "model_final.pt") as tmp:
            torch.save(with_meta, tmp)
        write_json_atomic(out_dir / "metrics.json", {"step": step, "last_loss": result["last_loss"],
                                                     "eval": result["eval"]})
    barrier()
    return result


def _apro_weight(config: TrainConfig, step: int) -> float:
    """The APro weight at ``step`` (0-based): ``apro_weight``, ramped in over ``apro_ramp`` steps."""
    if config.apro_ramp and step < config.apro_ramp:
        return config.apro_weight * step / config.apro_ramp
    return config.apro_weight


def online_apro_loss(config: TrainConfig):
    """``fn(logits, images, labels)``: the online APro term of this configuration (None when off)."""
    if config.apro_weight <= 0:
        return None
    if config.sparse is not None:  # the point/scribble setting: clamp the labelled pixels
        from clipapro.adapters.points import AProSoftLabelLoss

        loss = AProSoftLabelLoss(**config.apro_options)
        return lambda logits, images, labels: loss(logits, images, labels)
    return lambda logits, images, labels: apro_soft_loss(logits, images, **config.apro_options)


def training_loss(logits, images, labels, soft=None, *, config: TrainConfig, aux=None,
                  apro_weight: float = 0.0):
    """``(loss, ce)`` of one batch: the (partial) cross-entropy over labelled pixels (255 ignored),
    plus ``apro_weight`` x ``aux(logits, images, labels)`` (the online APro term), plus the stored
    soft-label term. logits (B, K, H, W) float, images (B, 3, H, W), labels (B, H, W) int64, soft
    (B, K, H, W) or None."""
    if bool((labels != IGNORE_INDEX).any()):
        ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    else:  # an all-ignore crop: keep the graph (DDP needs every rank to backprop) with zero loss
        ce = logits.sum() * 0.0
    loss = ce
    if aux is not None and apro_weight > 0:
        loss = loss + apro_weight * aux(logits, images, labels)
    if soft is not None:  # stored (offline) soft pseudo labels; padding has all-zero targets
        per_pixel = -(soft * F.log_softmax(logits, 1)).sum(1)
        valid = soft.sum(1) > 0
        loss = loss + config.soft_weight * per_pixel.sum() / valid.sum().clamp_min(1)
    return loss, ce


def _train_step(net, images, labels, soft, optimizer, scaler, config: TrainConfig, use_amp: bool, *,
                aux=None, apro_weight: float = 0.0):
    with torch.autocast(device_type=images.device.type, dtype=torch.float16, enabled=use_amp):
        logits = net(images)
    loss, ce = training_loss(logits.float(), images, labels, soft, config=config, aux=aux,
                             apro_weight=apro_weight)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss, ce



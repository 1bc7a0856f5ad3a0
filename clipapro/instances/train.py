"""Training loop of the box-supervised Mask R-CNN: resumable to the bit, DDP-ready (torchrun).

Optimisation as torchvision's detection reference: SGD (momentum 0.9, weight decay 1e-4), linear
warm-up from ``lr * warmup_factor`` over ``warmup_steps``, then the learning rate times 0.1 at each
fraction of ``lr_milestones`` of the run (their 26-epoch schedule drops at epochs 16 and 22:
fractions 0.62 and 0.85). The loss is torchvision's sum (RPN objectness and box, box classifier and
regression) with ``loss_mask`` the APro box loss. Data: boxes and labels only
(:class:`~clipapro.instances.trainset.BoxTrainSet`), random horizontal flips; the order of every
epoch comes from the seed (:func:`~clipapro.pseudo.trainset.epoch_batches`), so resuming needs no
data state; checkpoints (:mod:`clipapro.pseudo.checkpoint`) hold model, optimiser, scheduler and
every RNG, loaded with ``weights_only=True``.

Outputs in ``OUT``: ``config.json``, ``log.jsonl`` (losses, lr, steps/s every ``log_every``
steps, mask AP at each evaluation), ``checkpoints/step_*.pt``, and at the end ``model_final.pt``,
``predictions.json`` (COCO results of the val masks, for ``clipapro evaluate-instances``),
``predictions_box_filled.json`` (the same detections' boxes filled: the baseline) and ``metrics.json``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from clipapro.distributed import StopSignal, all_reduce_sum, barrier, dist_info
from clipapro.io import atomic_path, write_json_atomic
from clipapro.pseudo import checkpoint as ckpt
from clipapro.pseudo.labels import config_hash
from clipapro.pseudo.runloop import JsonLog, start_run
from clipapro.pseudo.trainset import epoch_batches, steps_per_epoch

__all__ = ["InstanceTrainConfig", "RUN_CONTROL", "build_scheduler", "load_trained_model", "train_instances"]

#: Fields that only steer a run (when to stop, log, save, evaluate); changing them keeps a checkpoint usable.
RUN_CONTROL = ("stop_at", "eval_every", "ckpt_every", "log_every", "workers", "eval_limit", "progress")
LOSS_KEYS = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


@dataclass
class InstanceTrainConfig:
    """Everything that defines a run (recorded in ``config.json`` and in checkpoints)."""

    num_classes: int
    category_ids: list = field(default_factory=list)
    model: str = "maskrcnn_resnet50_fpn"
    backbone_weights: str | None = None
    model_options: dict = field(default_factory=dict)
    mask_loss_options: dict = field(default_factory=dict)
    min_size: int = 800
    max_size: int = 1333
    steps: int = 90000
    batch_size: int = 2
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 1000
    warmup_factor: float = 0.001
    lr_milestones: tuple = (0.62, 0.85)
    flip: bool = True
    amp: bool = True  # used on CUDA only
    seed: int = 0
    stop_at: int | None = None
    eval_every: int = 0
    ckpt_every: int = 1000
    log_every: int = 20
    workers: int = 0
    eval_limit: int | None = None
    progress: bool = True

    def identity(self) -> dict:
        """The fields that must match for a checkpoint to be resumed (run-control fields excluded)."""
        d = asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return {k: v for k, v in d.items() if k not in RUN_CONTROL}


def build_scheduler(optimizer, config: InstanceTrainConfig):
    """Warm-up then step decay, as a ``LambdaLR`` of the step (see the module docstring)."""
    total, warm, factor = config.steps, config.warmup_steps, config.warmup_factor
    drops = [int(round(f * total)) for f in config.lr_milestones]

    def scale(step: int) -> float:
        w = 1.0 if step >= warm else factor + (1 - factor) * step / warm
        return w * 0.1 ** sum(step >= d for d in drops)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, scale)



def build_model(config: InstanceTrainConfig):
    """The model of ``config`` (seeded: the same initial weights on every rank)."""
    from clipapro.instances.models import create_instance_model

    torch.manual_seed(config.seed)
    return create_instance_model(config.model, config.num_classes, backbone_weights=config.backbone_weights,
                                 min_size=config.min_size, max_size=config.max_size,
                                 mask_loss_options=config.mask_loss_options, **config.model_options)


def load_trained_model(out_dir, *, device="cpu"):
    """The model of a finished ``train-instances`` run folder (``model_final.pt``, ``weights_only=True``),
    in eval mode, and its dataset category ids: ``(model, category_ids)``; model label k is
    ``category_ids[k - 1]``.

    Example:
        >>> # model, cats = load_trained_model("runs/pennfudan_tiny"); predict_instances(model, image)
    """
    out_dir = Path(out_dir)
    path = out_dir / "model_final.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run in {out_dir} has not finished")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        ident = dict(state["config"])
    except Exception as err:  # noqa: BLE001 - one message for every unreadable file
        raise ValueError(f"cannot read {path}: {' '.join(str(err).split())[:300]}") from None
    ident["lr_milestones"] = tuple(ident.get("lr_milestones", (0.62, 0.85)))
    config = InstanceTrainConfig(**ident)
    config.backbone_weights = None  # the trained weights replace them
    model = build_model(config)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), list(config.category_ids)


def train_instances(config: InstanceTrainConfig, train_dataset, *, out_dir, val_dataset=None, device="cpu",
                    resume: bool = True) -> dict:
    """Train on ``train_dataset`` (an instance dataset; its masks are never read) into ``out_dir``.

    Resumes from the newest readable checkpoint when ``resume``. ``config.stop_at`` stops early
    after that step (with a checkpoint), so does SIGTERM/SIGUSR1 after the step in flight. With
    ``val_dataset`` (ground truth in ``val_dataset.coco``) the mask AP of the model's masks and of
    its filled boxes is logged every ``eval_every`` steps and at the end, and the final predictions
    are written. Under torchrun (process group initialised by the caller) the model is wrapped in
    DistributedDataParallel.

    Returns:
        dict with ``step``, ``last_loss``, ``eval`` (the last evaluation or None), ``preempted``.
    """
    from tqdm import tqdm

    from clipapro.instances.trainset import BoxTrainSet, collate_detection

    info = dist_info()
    device = torch.device(device)
    out_dir = Path(out_dir)
    ident = config.identity()
    chash = config_hash(ident)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "config.json", {"config": asdict(config), "config_hash": chash})
    data = BoxTrainSet(train_dataset, flip=config.flip, seed=config.seed)
    per_epoch = steps_per_epoch(len(data), config.batch_size, info.world_size)
    model = build_model(config).to(device)
    if info.distributed and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = build_scheduler(optimizer, config)
    use_amp = bool(config.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    step, net = start_run(out_dir, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                          config_hash=chash, seed=config.seed, info=info, device=device, resume=resume)
    total = config.steps
    stop = min(total, config.stop_at) if config.stop_at is not None else total
    log = JsonLog(out_dir / "log.jsonl", enabled=info.is_main)
    result = {"step": step, "last_loss": None, "eval": None, "preempted": False}
    signals = StopSignal()
    bar = tqdm(total=stop, initial=step, unit="step", disable=not (config.progress and info.is_main),
               desc="train-instances", dynamic_ncols=True)
    net.train()
    running = torch.zeros(len(LOSS_KEYS) + 1, dtype=torch.float64)
    terms = torch.zeros(3, dtype=torch.float64)
    count, t0 = 0, time.perf_counter()
    try:
        while step < stop and not result["preempted"]:
            epoch, offset = divmod(step, per_epoch)
            batches = epoch_batches(len(data), epoch=epoch, seed=config.seed, batch_size=config.batch_size,
                                    rank=info.rank, world_size=info.world_size)[offset:]
            loader = torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=config.workers,
                                                 collate_fn=collate_detection,
                                                 generator=torch.Generator().manual_seed(config.seed + epoch))
            for images, targets in loader:
                images = [im.to(device, non_blocking=True) for im in images]
                targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
                losses = _train_step(net, images, targets, optimizer, scaler, use_amp, step)
                scheduler.step()
                step += 1
                running += torch.tensor([sum(losses.values())] + [losses[k] for k in LOSS_KEYS], dtype=torch.float64)
                mt = model.roi_heads.last_mask_terms
                terms += torch.tensor([mt.get("projection", 0.0), mt.get("global", 0.0), mt.get("local", 0.0)],
                                      dtype=torch.float64)
                count += 1
                bar.update(1)
                if step % config.log_every == 0 or step == stop:
                    both = all_reduce_sum(torch.cat([running, terms]).to(device)).cpu() / (count * info.world_size)
                    mean, tmean = both[: len(running)], both[len(running):]
                    result["last_loss"] = float(mean[0])
                    log.write(step=step, loss=float(mean[0]), **{k: float(v) for k, v in zip(LOSS_KEYS, mean[1:],
                                                                                           strict=True)},
                              mask_projection=float(tmean[0]), mask_global=float(tmean[1]),
                              mask_local=float(tmean[2]), lr=scheduler.get_last_lr()[0],
                              steps_per_s=count / (time.perf_counter() - t0))
                    bar.set_postfix(loss=f"{float(mean[0]):.3f}", mask=f"{float(mean[-1]):.3f}")
                    running.zero_()
                    terms.zero_()
                    count, t0 = 0, time.perf_counter()
                result["preempted"] = signals.any_rank(device) and step < stop
                if result["preempted"] or (config.ckpt_every and (step % config.ckpt_every == 0 or step == stop)):
                    ckpt.save_checkpoint(out_dir, step=step, model=model, optimizer=optimizer, scheduler=scheduler,
                                         scaler=scaler, config=ident, config_hash=chash, is_main=info.is_main)
                    barrier()
                due = config.eval_every and step % config.eval_every == 0 and step < total
                if val_dataset is not None and due and not result["preempted"]:
                    result["eval"] = _evaluate(model, val_dataset, config, step, log, info, final=False)
                    net.train()
                if step >= stop or result["preempted"]:
                    break
    finally:
        signals.restore()
        bar.close()
    result["step"] = step
    if result["preempted"]:
        log.write(step=step, preempted=True)
    if step >= total:
        if val_dataset is not None:
            result["eval"] = _evaluate(model, val_dataset, config, step, log, info, final=True, out_dir=out_dir)
        if info.is_main:
            with atomic_path(out_dir / "model_final.pt") as tmp:
                torch.save({"model": model.state_dict(), "config": ident, "config_hash": chash}, tmp)
            write_json_atomic(out_dir / "metrics.json", {"step": step, "last_loss": result["last_loss"],
                                                         "eval": result["eval"]})
    barrier()
    return result


def _train_step(net, images, targets, optimizer, scaler, use_amp: bool, step: int) -> dict:
    with torch.autocast(device_type=images[0].device.type, dtype=torch.float16, enabled=use_amp):
        loss_dict = net(images, targets)
    loss = sum(v.float() for v in loss_dict.values())
    if not math.isfinite(float(loss.detach())):
        parts = {k: float(v) for k, v in loss_dict.items()}
        raise FloatingPointError(f"step {step + 1}: the loss is not finite ({parts}); lower --lr or raise "
                                 "--warmup-steps")
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return {k: float(v.detach()) for k, v in loss_dict.items()}


def _evaluate(model, val_dataset, config, step, log, info, *, final: bool, out_dir=None):
    """Rank 0 scores the val set (mask AP of masks and of filled boxes); the others wait."""
    from clipapro.instances.predict import evaluate_instance_model

    scores = None
    if info.is_main:
        limit = None if final else config.eval_limit
        ev = evaluate_instance_model(model, val_dataset, config.category_ids, limit=limit, progress=config.progress)
        scores = {"mask": _summary(ev["mask"]), "box_filled": _summary(ev["box_filled"])}
        log.write(step=step, eval_mask_AP=scores["mask"]["AP"], eval_mask_AP50=scores["mask"]["AP50"],
                  eval_box_filled_AP=scores["box_filled"]["AP"], eval_box_filled_AP50=scores["box_filled"]["AP50"],
                  final=final)
        if out_dir is not None:
            write_json_atomic(Path(out_dir) / "predictions.json", ev["results"])
            write_json_atomic(Path(out_dir) / "predictions_box_filled.json", ev["results_box_filled"])
    barrier()
    return scores


def _summary(ap: dict) -> dict:
    return {k: ap[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "per_class", "num_images",
                               "num_predictions") if k in ap}



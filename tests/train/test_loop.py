import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from wavestream.train.loop import LoopConfig, fit, optimizer_from_tensors, optimizer_to_tensors
from wavestream.train.losses import MultiResolutionSTFTLoss, si_sdr


def _problem():
    """A small regression: y = x @ W_true; batches are a function of the step."""
    torch.manual_seed(0)
    w_true = torch.randn(8, 3)

    def batch_at(step: int):
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(16, 8, generator=g)
        return x, x @ w_true

    def batches(start: int):
        step = start
        while True:
            yield batch_at(step)
            step += 1

    def loss_fn(model, batch):
        x, y = batch
        loss = (model(x) - y).pow(2).mean()
        return loss, {"mse": loss.item()}

    dev = batch_at(-1)

    def evaluate(model):
        return {"neg_mse": -(model(dev[0]) - dev[1]).pow(2).mean().item()}

    return batches, loss_fn, evaluate


def _model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


CFG = dict(steps=12, lr=0.01, warmup_steps=3, log_every=2, eval_every=4, checkpoint_every=4, threads=1)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    batches, loss_fn, evaluate = _problem()
    whole = _model()
    fit(whole, loss_fn, batches, evaluate, LoopConfig(**CFG), tmp_path / "whole", "neg_mse", progress=False)

    def interrupted(start):  # the process dies while fetching the batch of step 6 (after the step-4 checkpoint)
        for step, batch in enumerate(batches(start), start):
            if step == 6:
                raise KeyboardInterrupt
            yield batch

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), loss_fn, interrupted, evaluate, LoopConfig(**CFG), tmp_path / "cut", "neg_mse", progress=False)
    assert json.loads((tmp_path / "cut" / "last.json").read_text())["step"] == 4
    resumed = _model()
    meta = fit(resumed, loss_fn, batches, evaluate, LoopConfig(**CFG), tmp_path / "cut", "neg_mse", resume=True,
               progress=False)
    assert meta["step"] == 12
    assert [h["step"] for h in meta["history"]] == [4, 8, 12]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{name} differs after resume"
    log = (tmp_path / "cut" / "train.log").read_text()
    assert "resumed at step 4" in log and "dev step 12" in log


def test_best_checkpoint_is_the_best_dev_score(tmp_path):
    batches, loss_fn, evaluate = _problem()
    meta = fit(_model(), loss_fn, batches, evaluate, LoopConfig(**CFG), tmp_path, "neg_mse", progress=False)
    best = json.loads((tmp_path / "best.json").read_text())
    scores = {h["step"]: h["neg_mse"] for h in meta["history"]}
    assert best["step"] == max(scores, key=scores.get)
    assert best["metrics"]["neg_mse"] == pytest.approx(max(scores.values()))
    assert (tmp_path / "best.safetensors").exists() and not (tmp_path / "best.optim.safetensors").exists()


def test_a_fine_tune_scores_its_start_and_keeps_it_when_nothing_beats_it(tmp_path):
    batches, loss_fn, evaluate = _problem()
    model = _model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    diverging = dict(CFG, lr=50.0)  # every step makes the weights worse
    meta = fit(model, loss_fn, batches, evaluate, LoopConfig(**diverging), tmp_path, "neg_mse", progress=False,
               run_info={"init": "start.safetensors"})
    assert [h["step"] for h in meta["history"]] == [0, 4, 8, 12]
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["step"] == 0 and "dev step 0 " in (tmp_path / "train.log").read_text()
    kept = load_file(str(tmp_path / "best.safetensors"))
    assert all(torch.equal(kept[k], v) for k, v in start.items())


def test_a_weight_average_is_what_is_scored_kept_and_resumed(tmp_path):
    batches, loss_fn, evaluate = _problem()
    cfg = dict(CFG, ema_decay=0.9)
    raw = _model()  # the same run without the average: its trajectory, averaged here by hand
    average = {k: v.clone() for k, v in raw.named_parameters()}
    it = batches(0)
    optimizer = torch.optim.Adam(raw.parameters(), lr=cfg["lr"])
    loop = LoopConfig(**cfg)
    for step in range(cfg["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = loop.lr_at(step)
        loss, _ = loss_fn(raw, next(it))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(raw.parameters(), loop.grad_clip)
        optimizer.step()
        decay = min(0.9, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in raw.named_parameters():
                average[k] = decay * average[k] + (1 - decay) * v
    whole = _model()
    meta = fit(whole, loss_fn, batches, evaluate, loop, tmp_path / "whole", "neg_mse", progress=False)
    kept = load_file(str(tmp_path / "whole" / "last.safetensors"))
    for k, v in raw.named_parameters():
        assert torch.allclose(whole.state_dict()[k], v, atol=1e-6), f"{k}: the trained weights are not the plain run's"
        assert torch.allclose(kept[k], average[k], atol=1e-6), f"{k}: last.safetensors is not the average"
        assert not torch.allclose(kept[k], v, atol=1e-4), f"{k}: the average equals the trained weights"
    averaged_model = _model()
    averaged_model.load_state_dict(kept)
    assert meta["history"][-1]["neg_mse"] == pytest.approx(evaluate(averaged_model)["neg_mse"])

    def interrupted(start):  # cut while fetching the batch of step 6, after the step-4 checkpoint
        for step, batch in enumerate(batches(start), start):
            if step == 6:
                raise KeyboardInterrupt
            yield batch

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), loss_fn, interrupted, evaluate, loop, tmp_path / "cut", "neg_mse", progress=False)
    resumed = _model()
    fit(resumed, loss_fn, batches, evaluate, loop, tmp_path / "cut", "neg_mse", resume=True, progress=False)
    again = load_file(str(tmp_path / "cut" / "last.safetensors"))
    for k, v in kept.items():
        assert torch.equal(v, again[k]), f"{k}: the average differs after resume"
        assert torch.equal(whole.state_dict()[k], resumed.state_dict()[k]), f"{k}: trained weights differ after resume"


def test_optimizer_state_round_trip():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95))
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    meta = json.loads(json.dumps(meta))  # it must survive JSON
    other = torch.optim.Adam(_model().parameters(), lr=0.5)
    optimizer_from_tensors(other, tensors, meta)
    a, b = opt.state_dict(), other.state_dict()
    assert b["param_groups"][0]["betas"] == (0.8, 0.95) and b["param_groups"][0]["lr"] == 0.01
    for idx in a["state"]:
        for k, v in a["state"][idx].items():
            assert torch.equal(v, b["state"][idx][k])


def test_lr_schedule_warmup_then_cosine():
    cfg = LoopConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [cfg.lr_at(s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert cfg.lr_at(100) == pytest.approx(0.1)


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="unknown training options"):
        LoopConfig.from_dict({"steps": 1, "learning_rate": 0.1})


def test_si_sdr_values():
    torch.manual_seed(0)
    ref = torch.randn(2, 1000)
    ref = ref - ref.mean(-1, keepdim=True)
    assert (si_sdr(3 * ref, ref) > 60).all()  # scale does not matter
    noise = torch.randn(2, 1000)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / ref.pow(2).sum(-1, keepdim=True) * ref  # orthogonal
    noise = noise * ref.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)
    assert si_sdr(ref + noise, ref) == pytest.approx(torch.zeros(2), abs=1e-3)  # equal energy: 0 dB
    with pytest.raises(ValueError):
        si_sdr(ref, ref[:, :10])


def test_stft_loss_zero_for_identical_and_grows_with_noise():
    torch.manual_seed(0)
    loss = MultiResolutionSTFTLoss()
    x = torch.randn(2, 4000)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x + 0.1 * torch.randn_like(x), x) < loss(x + torch.randn_like(x), x)


def test_step_batches_follow_the_step_and_leave_the_global_rng_alone():
    from wavestream.train.loop import step_batches

    data = torch.arange(20.0)[:, None]
    before = torch.get_rng_state()
    batches = list(step_batches(data, 2, start=3, steps=6, num_workers=1))
    # making a loader with workers must not draw from the RNG a resumed run restores from its checkpoint
    assert torch.equal(torch.get_rng_state(), before)
    assert [b[:, 0].tolist() for b in batches] == [[6.0, 7.0], [8.0, 9.0], [10.0, 11.0]]


def test_the_command_line_overrides_steps_and_both_seeds():
    import argparse

    from wavestream.train.commands import add_arguments, apply_overrides

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = {"train": {"steps": 5000, "seed": 0}, "data": {"seed": 0, "batch_size": 32}}
    args = parser.parse_args(["kws", "--seed", "3", "--steps", "10"])
    assert apply_overrides(config, args) == {"train": {"steps": 10, "seed": 3}, "data": {"seed": 3, "batch_size": 32}}
    unchanged = {"train": {"steps": 5000, "seed": 0}, "data": {"seed": 0}}
    assert apply_overrides(unchanged, parser.parse_args(["enhance"])) == {"train": {"steps": 5000, "seed": 0},
                                                                         "data": {"seed": 0}}

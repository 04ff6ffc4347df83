"""The shared training core (:mod:`how_cnns_learn.training`): the classifier and weight-decay trainers, one
weight-decay convention, one recording callback, and the device they ran on."""

import copy
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from how_cnns_learn import bottleneck as bn, data, models, repro, simulate, training


def _small_classifier_problem():
    from how_cnns_learn import models

    train = data.noisy_templates(data.designed_structure(), per_class=4, seed=0)
    torch.manual_seed(0)
    net = models.ConvClassifier(8, 3, (3,), channels=2, activation="relu", init_gain=0.5).double()
    return train, net


def test_full_batch_adam_first_step_is_the_bias_corrected_sign_step():
    """Adam's first step is ``θ − lr·ĝ/(|ĝ| + ε)`` (bias-corrected moments ``m̂ = g``, ``v̂ = g²``)."""
    train, net = _small_classifier_problem()
    X, y = torch.as_tensor(train.inputs).unsqueeze(1), torch.as_tensor(train.targets.argmax(1))
    W0 = [p.detach().clone() for p in net.parameters()]
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(net(X), y), list(net.parameters()))
    training.train_classifier(net, train, test_data=train, epochs=1, lr=1e-3, batch_size=None, optimizer="adam")
    for p, p0, g in zip(net.parameters(), W0, grads):
        torch.testing.assert_close(p.detach(), p0 - 1e-3 * g / (g.abs() + 1e-8))


def test_batch_size_none_is_full_batch_and_minibatches_partition_each_epoch():
    train, net = _small_classifier_problem()
    net2 = copy.deepcopy(net)
    a = training.train_classifier(net, train, test_data=train, epochs=3, lr=0.01, batch_size=None, loss="mse")
    b = training.train_classifier(net2, train, test_data=train, epochs=3, lr=0.01, batch_size=10**6, loss="mse")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.step) == [0, 3]
    assert train.inputs.shape[0] == 12  # the default test split holds out 2, batches of 5: 2 steps per epoch
    h = training.train_classifier(net, train, epochs=2, lr=0.01, batch_size=5, seed=1, record_every=1)
    assert list(h.step) == [0, 2, 4]


def test_full_batch_gd_keeps_a_small_init_linear_cnn_balanced():
    """Gradient flow conserves ``w wᵀ − Σ_p U_pᵀU_p`` (CNFA chapter); small-lr full-batch GD keeps it O(init²)."""
    from how_cnns_learn import agop, models

    train = data.TrainingSet(data.digits().inputs[:60], data.digits().targets[:60], "mean")
    torch.manual_seed(0)
    net = models.LinearCNN(8, 3, 10, channels=2)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.01)

    def imbalance():
        w, U = net.conv.weight.detach().reshape(2, -1), net.dense.weight.detach().reshape(10, 2, 64)
        return w @ w.T - torch.einsum("ocp,odp->cd", U, U), w @ w.T

    I0, _ = imbalance()
    h = training.train_classifier(net, train, test_data=train, epochs=400, lr=0.2, batch_size=None, loss="mse")
    assert h["train loss"].iloc[-1] < 0.2 * h["train loss"].iloc[0]  # measured 0.047 / 0.50
    I1, wwT = imbalance()
    assert torch.linalg.norm(I1 - I0) < 0.02 * torch.linalg.norm(wwT)  # measured 0.0073 (0.015 at lr 0.4: O(lr))
    G = agop.patch_agop(torch.as_tensor(train.inputs[:, None]), net.conv, lambda z: net.dense(z.flatten(1)))
    F = agop.filter_covariance(net.conv.weight)
    assert np.linalg.norm(F - agop.psd_sqrt(G)) < 0.1 * np.linalg.norm(F)  # measured 0.020; G itself: 1.22


def test_recorded_mode_strengths_come_through_the_callback():
    train = data.noisy_templates(data.designed_structure(), per_class=10, seed=0)
    structure = train.structure()
    torch.manual_seed(0)
    net = models.ConvClassifier(8, 3, (8,), channels=2, activation="relu", init_gain=0.5).double()

    def strengths(model):
        return {f"a{a + 1}": v for a, v in enumerate(simulate.mode_strengths(training.model_outputs(model, train),
                                                                            train, structure))}

    history = training.train_classifier(net, train, test_data=train, epochs=3, lr=0.01, batch_size=10**6,
                                        loss="mse", on_record=strengths, record_every=1)
    with torch.no_grad():
        out = net(torch.as_tensor(train.inputs).unsqueeze(1)).numpy()
    np.testing.assert_array_equal(history[["a1", "a2", "a3"]].iloc[-1].to_numpy(),
                                  simulate.mode_strengths(out, train, structure))
    assert list(history.epoch) == [0, 1, 2, 3]


def test_weight_decay_is_lambda_over_two_times_the_squared_norm():
    """One convention: ``weight_decay = λ`` adds ``(λ/2)‖θ‖²``, so one plain GD step is ``θ ← θ − η(∇L + λθ)``."""
    model = bn.CircularCNN([1, 2, 1], 8, seed=3)
    H = bn.lowpass_blocks(8, 1)
    theta0 = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(bn.population_mse(model, H), list(model.parameters()))
    table = training.train_weight_decay(model, lambda m: bn.population_mse(m, H), weight_decay=0.3, steps=1, lr=0.1,
                                        optimizer="gd", record_every=1)
    for p, p0, g in zip(model.parameters(), theta0, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * (g + 0.3 * p0))
    first = table.iloc[0]
    assert first["objective"] == pytest.approx(first["loss"] + 0.15 * first["sq_norm"], rel=1e-12)


def test_weight_decay_trainer_records_through_the_callback():
    model = bn.CircularCNN([1, 2, 1], 8, seed=3)
    H = bn.lowpass_blocks(8, 1)
    table = training.train_weight_decay(model, lambda m: bn.population_mse(m, H), weight_decay=1e-2, steps=10, lr=1e-2,
                                        record_every=5, on_record=lambda m: {"norm0": m.filter_sq_norms()[0]})
    assert list(table.step) == [0, 5, 10] and "norm0" in table


def test_trainers_report_where_they_ran():
    repro.reset_devices_used()
    train, net = _small_classifier_problem()
    h = training.train_classifier(net, train, test_data=train, epochs=1, lr=0.01, batch_size=None, loss="mse")
    model = bn.CircularCNN([1, 2, 1], 8)
    t = training.train_weight_decay(model, lambda m: m.sq_norm(), weight_decay=0.0, steps=1, lr=1e-3)
    assert h.attrs["device"] == "cpu" and t.attrs["device"] == "cpu"
    assert repro.devices_used() == {"cpu": ["train_classifier", "train_weight_decay"]}


@pytest.mark.parametrize("device, match", [("tpu", "device: unknown device 'tpu'"), (7, "device must be")])
def test_trainers_validate_the_device(device, match):
    train, net = _small_classifier_problem()
    with pytest.raises(ValueError, match=match):
        training.train_classifier(net, train, epochs=1, device=device)
    with pytest.raises(ValueError, match=match):
        training.train_weight_decay(bn.CircularCNN([1, 2, 1], 8), lambda m: m.sq_norm(), weight_decay=0.0, steps=1,
                                    lr=1e-3, device=device)


def test_cuda_is_rejected_by_name_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error for a missing CUDA cannot be provoked")
    with pytest.raises(ValueError, match="device='cuda' was asked for but CUDA is not available"):
        training.train_weight_decay(bn.CircularCNN([1, 2, 1], 8), lambda m: m.sq_norm(), weight_decay=0.0, steps=1,
                                    lr=1e-3, device="cuda")


def test_the_bottleneck_network_and_its_fft_path_are_device_agnostic_on_meta():
    """The placement code of the bottleneck (parameters, signals, FFT convolution, population loss, backward pass)
    runs on the shape-only "meta" device: nothing is silently created on the CPU."""
    model = bn.CircularCNN([1, 3, 1], 8, relu=False, seed=0, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    x = bn.gaussian_signals(5, 8, device="meta")
    y = model(x)
    assert y.device.type == "meta" and y.shape == (5, 1, 8)
    assert bn.lowpass(x, 1).device.type == "meta"
    loss = bn.population_mse(model, bn.lowpass_blocks(8, 1)) + 0.5 * model.sq_norm()
    loss.backward()
    assert model.filters[0].grad.device.type == "meta"
    assert repro.record_device(model, by="meta_check").type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only path: this machine has no CUDA device")
def test_trainers_run_on_cuda_and_agree_with_the_cpu():
    repro.reset_devices_used()
    H = bn.lowpass_blocks(8, 1)
    runs = {}
    for device in ("cpu", "cuda"):
        model = bn.CircularCNN([1, 2, 1], 8, seed=5, device=device)
        runs[device] = training.train_weight_decay(model, lambda m: bn.population_mse(m, H), weight_decay=1e-2,
                                                   steps=200, lr=1e-2, record_every=100, device=device)
    assert runs["cuda"].attrs["device"].startswith("cuda")
    np.testing.assert_allclose(runs["cuda"]["objective"], runs["cpu"]["objective"], rtol=1e-8)
    train, net = _small_classifier_problem()
    net_gpu = copy.deepcopy(net)
    a = training.train_classifier(net, train, test_data=train, epochs=5, lr=0.01, batch_size=None, loss="mse")
    b = training.train_classifier(net_gpu, train, test_data=train, epochs=5, lr=0.01, batch_size=None, loss="mse",
                                  device="cuda")
    assert b.attrs["device"].startswith("cuda") and next(net_gpu.parameters()).is_cuda
    np.testing.assert_allclose(a["train loss"], b["train loss"], rtol=1e-8)
    used = repro.devices_used()
    assert used["cpu"] == ["train_weight_decay", "train_classifier"]
    assert [k for k in used if k.startswith("cuda")] and "train_classifier" in used[next(k for k in used if k.startswith("cuda"))]


def test_model_outputs_names_bad_input():
    _, net = _small_classifier_problem()
    with pytest.raises(ValueError, match=r"inputs must be images of shape \(N, n, n\)"):
        training.model_outputs(net, np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="model has no parameters"):
        training.model_outputs(torch.nn.Identity(), np.zeros((2, 8, 8)))


def test_the_chapter_footer_reports_the_device_the_trainer_used():
    ctx = repro.chapter_setup(quick=True, seed=0, device="cpu")
    model = bn.CircularCNN([1, 2, 1], 8)
    training.train_weight_decay(model, lambda m: m.sq_norm(), weight_decay=0.0, steps=1, lr=1e-3, device=ctx.device)
    footer = repro.environment_report(ctx)["value"]
    assert footer["device used"] == "cpu (train_weight_decay)" and footer["device requested"] == "cpu"


@pytest.mark.parametrize("optimizer", ["adam", "gd"])
def test_plain_optimisers_are_torch_optim_to_the_last_bit(optimizer):
    """PlainAdam / PlainSGD with the schedule lr ← lr·γ give torch's single-tensor Adam / SGD with ExponentialLR
    bit for bit (float64, 25 steps); a parameter without a gradient is left alone, as torch leaves it."""
    gen = torch.Generator().manual_seed(5)
    start = [torch.randn(3, 4, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen, dtype=torch.float64),
             torch.randn(2, generator=gen, dtype=torch.float64)]
    grads = [[torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in start[:2]] for _ in range(25)]
    ours = [p.clone() for p in start]
    theirs = [torch.nn.Parameter(p.clone()) for p in start]
    lr, gamma = 0.03, 0.9
    opt = (torch.optim.Adam(theirs, lr=lr, foreach=False) if optimizer == "adam"
           else torch.optim.SGD(theirs, lr=lr, foreach=False))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    plain = training.plain_optimiser(ours, optimizer, lr)
    for g in grads:
        plain.zero_grad()
        opt.zero_grad()
        for p, q, gi in zip(ours, theirs, g):
            p.grad, q.grad = gi.clone(), gi.clone()
        plain.step()
        plain.lr = plain.lr * gamma
        opt.step()
        sched.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q.detach(), rtol=0, atol=0)
    assert torch.equal(ours[2], start[2])


def test_plain_optimisers_refuse_bad_settings():
    with pytest.raises(ValueError, match="optimizer must be"):
        training.plain_optimiser([torch.zeros(2)], "rmsprop", 0.1)
    with pytest.raises(ValueError, match="no parameters"):
        training.PlainSGD([], 0.1)
    with pytest.raises(ValueError, match="real parameters"):
        training.PlainAdam([torch.zeros(2, dtype=torch.complex128)], 0.1)


def test_the_trainers_build_no_torch_optimiser():
    """No trainer of the library imports torch._dynamo (what the first torch.optim optimiser of a process does,
    1.3-2.0 s in every chapter that trains): the classifier, weight-decay and stacked linear-CNN trainers."""
    code = ("import sys, torch\n"
            "from how_cnns_learn import bottleneck as bn, data, models, training\n"
            "net = bn.CircularCNN([1, 2, 1], 8, seed=0)\n"
            "for opt in ('adam', 'gd'):\n"
            "    bn.train_linear_cnns([net], [bn.lowpass_blocks(8, 1)], weight_decay=1e-3, steps=3, lr=1e-2, optimizer=opt)\n"
            "d = data.digits()\n"
            "for opt in ('sgd', 'adam'):\n"
            "    training.train_classifier(models.MLPClassifier(8, 10, hidden=8), d, epochs=1, optimizer=opt)\n"
            "    training.train_classifiers([models.MLPClassifier(8, 10, hidden=8) for _ in (0, 1)], d, seeds=[0, 1], epochs=1,\n"
            "                               optimizer=opt)\n"
            "net = torch.nn.Linear(3, 1)\n"
            "for opt in ('adam', 'gd'):\n"
            "    training.train_weight_decay(net, lambda m: m(torch.ones(2, 3)).square().mean(), weight_decay=0.1,\n"
            "                                steps=3, lr=1e-2, lr_final=1e-3, optimizer=opt)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

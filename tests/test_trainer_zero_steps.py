"""A 0-step run (closed-form fits) builds no optimiser, and its checkpoint still resumes into a real run."""

import torch

from training.trainer import train_loop


def test_a_0_step_checkpoint_resumes_into_a_trained_run(tmp_path):
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 0.0)

    def step_loss(step):
        return ((model.weight - 1.0) ** 2).sum(), {}

    assert train_loop(model, step_loss, run_dir=tmp_path, steps=0, quiet=True) == []
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["optimizer"] is None and saved["step"] == 0 and model.weight.item() == 0.0
    history = train_loop(model, step_loss, run_dir=tmp_path, steps=3, lr=0.1, log_every=1, quiet=True)
    assert [h["step"] for h in history] == [0, 1, 2] and 0.0 < model.weight.item() < 1.0
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]["state"]  # Adam's moments saved

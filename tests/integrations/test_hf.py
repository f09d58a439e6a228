"""The Hugging Face Trainer: a small BERT built from a config (no download) on two synthetic
text-classification tasks; EWC through LifelongTrainer forgets measurably less than fine-tuning, and
the consolidated state round-trips through Learner.save / load to the same matrix."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from lifelong import EWC, KFAC, Learner, Naive, TaskStream  # noqa: E402
from lifelong.errors import UsageError  # noqa: E402
from lifelong.integrations.hf import LifelongTrainer, SequenceClassifier  # noqa: E402

LAM = 30000.0


def tasks():
    """Task A: label 1 iff token 3 occurs (other tokens from 10-29). Task B: the opposite rule, other
    tokens from 30-49: both can be solved at once, but learning B alone overwrites what 3 means."""
    g = torch.Generator().manual_seed(0)

    def make(lo, n, flip):
        x = torch.randint(lo, lo + 20, (n, 12), generator=g)
        y = torch.randint(0, 2, (n,), generator=g)
        pos = torch.randint(0, 12, (n,), generator=g)
        x[torch.arange(n)[y == 1], pos[y == 1]] = 3
        return x, (1 - y) if flip else y

    return [make(10, 256, False), make(30, 256, True)], [make(10, 256, False), make(30, 256, True)]


class Dataset(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


def bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=16, num_labels=2)
    return SequenceClassifier(transformers.BertForSequenceClassification(cfg))


def args(tmp_path):
    return transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), num_train_epochs=6, per_device_train_batch_size=32,
                                          learning_rate=3e-3, report_to=[], save_strategy="no", logging_strategy="no",
                                          use_cpu=True, seed=0, max_grad_norm=0.0, disable_tqdm=True)


def learn(strategy, tmp_path, save_after_first=None):
    train, test = tasks()
    net = bert()
    cl = Learner(net, strategy, TaskStream.from_tensors(train, test, scenario="domain"))
    for k, (x, y) in enumerate(train):
        if save_after_first is not None and k == 1:
            cl.save(save_after_first)
            return cl
        LifelongTrainer(cl, model=net.model, args=args(tmp_path), train_dataset=Dataset(x, y)).train()
    return cl


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"ewc": learn(EWC(lam=LAM), tmp), "naive": learn(Naive(), tmp), "kfac": learn(KFAC(lam=LAM), tmp), "tmp": tmp}
    finally:
        torch.set_num_threads(threads)


def test_ewc_in_the_hf_trainer_forgets_measurably_less_than_fine_tuning(runs):
    ewc, naive = runs["ewc"].accuracy_matrix, runs["naive"].accuracy_matrix
    assert ewc[1, 0] > 0.95 and naive[1, 0] > 0.95  # both learned task A
    assert naive[2, 0] < 0.6  # fine-tuning on B overwrote A (seen here: 0.51)
    f_ewc, f_naive = runs["ewc"].summary()["forgetting"], runs["naive"].summary()["forgetting"]
    assert f_ewc < f_naive - 0.15  # seen here: 0.16 against 0.48
    assert float(runs["ewc"].penalty()) > 0


def test_kfac_in_the_hf_trainer_factors_the_2d_layers_keeps_the_diagonal_elsewhere_and_forgets_less(runs):
    """A transformer's Linear layers run on (batch, tokens, features): no Kronecker factors there (K-FAC
    assumes one input vector per sample), so they, the embeddings and the LayerNorms get the diagonal
    Fisher; the pooler and the classifier, on one vector per sample, get their blocks."""
    kfac = runs["kfac"]
    laplace = kfac.strategy.report_laplace()
    assert sorted(laplace["kronecker_layers"]) == ["model.bert.pooler.dense", "model.classifier"]
    diagonal = laplace["diagonal_parameters"]
    assert "model.bert.embeddings.word_embeddings.weight" in diagonal
    assert "model.bert.encoder.layer.0.attention.self.query.weight" in diagonal
    assert not any(n.startswith(("model.classifier.", "model.bert.pooler.")) for n in diagonal)
    assert kfac.accuracy_matrix[1, 0] > 0.95
    assert kfac.summary()["forgetting"] < runs["naive"].summary()["forgetting"] - 0.15


def test_the_consolidated_state_round_trips_and_continues_to_the_same_matrix(runs, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path / "after-task-1.safetensors"
        first = learn(EWC(lam=LAM), tmp_path, save_after_first=path)
        train, test = tasks()
        net = bert()  # a fresh model and strategy: everything comes from the file
        cl = Learner(net, EWC(lam=LAM), TaskStream.from_tensors(train, test, scenario="domain"))
        cl.load(path)
        a, b = first.strategy.state_dict(), cl.strategy.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert float(cl.penalty()) == float(first.penalty()) == 0.0  # θ is θ*_A
        assert cl.rows == first.rows
        LifelongTrainer(cl, model=net.model, args=args(tmp_path), train_dataset=Dataset(*train[1])).train()
    finally:
        torch.set_num_threads(threads)
    assert cl.accuracy_matrix.tolist() == runs["ewc"].accuracy_matrix.tolist()


def test_trainer_misuse_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="takes a lifelong.Learner"):
        LifelongTrainer(object(), model=bert().model, args=args(tmp_path))
    train, test = tasks()
    net = bert()
    cl = Learner(net, Naive(), TaskStream.from_tensors(train, test, scenario="domain"))
    bad = [{"input_ids": x} for x in train[0][0][:4]]  # no labels
    with pytest.raises(UsageError, match="input_ids and labels"):
        LifelongTrainer(cl, model=net.model, args=args(tmp_path), train_dataset=bad).train()


def test_readme_hf_snippet_runs_verbatim_and_ewc_forgets_less_than_fine_tuning(tmp_path, monkeypatch):
    import re

    from tests.helpers import readme_block, run_block

    monkeypatch.chdir(tmp_path)  # the snippet's output_dir
    code = readme_block("hf")
    lam = re.search(r"EWC\(lam=([0-9.e+]+)\)", code).group(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ewc = run_block(code, tasks())["cl"]
        naive = run_block(code.replace(f"EWC(lam={lam})", "EWC(lam=0.0)"), tasks())["cl"]  # fine-tuning, same args
    finally:
        torch.set_num_threads(threads)
    assert float(lam) == LAM  # the README's λ is the one the other tests measure
    assert ewc.accuracy_matrix[1, 0] > 0.9 and naive.accuracy_matrix[1, 0] > 0.9  # task A learned
    assert ewc.summary()["forgetting"] < naive.summary()["forgetting"] - 0.2
    assert ewc.summary()["average_accuracy"] > naive.summary()["average_accuracy"]  # not bought by learning nothing


def test_the_hf_trainer_reads_a_task_free_stream_in_its_order_and_measures_its_curve(tmp_path):
    from lifelong import DERpp, TrainSettings, task_free

    train, test = tasks()
    stream = task_free(TaskStream.from_tensors(train, test, scenario="domain"), "ordered", eval_per_group=50)
    net = bert()
    cl = Learner(net, DERpp(memory=64), stream, settings=TrainSettings(eval_every=128))
    seen = []
    real = cl.batch

    def batch(x, y, task=None):
        seen.append(y.clone())
        return real(x, y, task)

    cl.batch = batch
    a = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), num_train_epochs=1, per_device_train_batch_size=16,
                                       learning_rate=3e-3, report_to=[], save_strategy="no", logging_strategy="no",
                                       use_cpu=True, seed=0, max_grad_norm=0.0, disable_tqdm=True)
    LifelongTrainer(cl, model=net.model, args=a, train_dataset=Dataset(stream[0].train.images,
                                                                      stream[0].train.targets)).train()
    assert torch.equal(torch.cat(seen), stream[0].train.targets)  # the stream's order, each sample once
    assert [p["samples"] for p in cl.curve] == [128, 256, 384, 512]
    assert cl.anytime()["metrics"]["auc_accuracy"] is not None

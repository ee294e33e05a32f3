"""TorchServe's run state and start-up failure detection, without starting a server."""

from __future__ import annotations

from pathlib import Path

from scripts.runtimes.torchserve.server import Ports, TorchServe, load_failed


def test_a_short_work_directory_keeps_its_sockets_inside():
    server = TorchServe(Path("/tmp/x/.torchship/torchserve"), Ports())
    assert server.temp == server.workdir / "tmp"


def test_a_deep_work_directory_gets_a_short_socket_folder_a_kernel_accepts():
    deep = Path("/tmp") / ("their-repository-" * 6) / ".torchship" / "torchserve"
    server = TorchServe(deep, Ports())
    assert not server.temp.is_relative_to(deep)
    assert len(str(server.temp / ".ts.sock.65535")) < 108  # sun_path's size
    assert server.temp == TorchServe(deep, Ports()).temp  # `make stop` finds the same folder


WORKER_ERROR = (
    "2026-12-01T23:18:46,646 [ERROR] W-9000-{name} org.pytorch.serve.wlm.WorkerThread - "
    "Backend worker error\n"
)


def test_a_worker_that_keeps_dying_at_start_fails_its_model_only(tmp_path):
    log = tmp_path / "ts_log.log"
    log.write_text(WORKER_ERROR.format(name="scorer_1") * 2)
    assert not load_failed(log, "scorer")  # TorchServe retries: not yet
    log.write_text(WORKER_ERROR.format(name="scorer_1") * 3)
    assert load_failed(log, "scorer")
    # a model whose name is a prefix of the failing one's is not blamed
    log.write_text(WORKER_ERROR.format(name="scorer_big_1") * 3)
    assert not load_failed(log, "scorer")

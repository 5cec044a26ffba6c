from wavestream.cli import main


def test_bench_lists_and_rejects_unknown(capsys):
    assert main(["bench", "no-such-benchmark"]) == 2
    err = capsys.readouterr().err
    assert "step_overhead" in err and "load" in err


def test_bench_runs_a_benchmark_with_its_arguments(capsys):
    assert main(["bench", "step_overhead", "--seconds", "0.01", "--rounds", "1"]) == 0
    assert "CausalConv1d" in capsys.readouterr().out

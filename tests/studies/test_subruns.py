"""What the studies share (kecae.studies.subruns): their configurations refuse bad values, and
the report shows all three studies."""

from __future__ import annotations

import pytest

from kecae.studies import downstream, lambda_grid, sampling


@pytest.mark.parametrize(
    "cls, values, match",
    [
        (downstream.DownstreamConfig, dict(run="r", seeds=0), "seeds"),
        (downstream.DownstreamConfig, dict(run="r", archs=["nope"]), "architecture"),
        (downstream.DownstreamConfig, dict(run="r", training_sets=["T''"]), "training set"),
        (downstream.DownstreamConfig, dict(run=""), "run folder"),
        (sampling.SamplingConfig, dict(run="r", sizes=[0, -5]), "sizes"),
        (sampling.SamplingConfig, dict(run="r", sizes=[5, 5]), "distinct"),
        (lambda_grid.LambdaGridConfig, dict(run="r", lambda1=[]), "lambda1"),
        (lambda_grid.LambdaGridConfig, dict(run="r", kecae_steps=0), "kecae_steps"),
    ],
)
def test_bad_arguments_raise(cls, values, match):
    with pytest.raises(ValueError, match=match):
        cls(**values)


def test_report_shows_the_three_studies(run_dir, kit):
    from kecae.report import write_report

    # finished by the tests above (then these calls only read), or computed here when run alone
    downstream.run_downstream(kit.downstream_cfg(run_dir))
    sampling.run_sampling(kit.sampling_cfg(run_dir))
    lambda_grid.run_lambda_grid(kit.lambda_cfg(run_dir))
    page = write_report(run_dir).read_text()
    assert "Table II" in page and "Fig. 3" in page and "Fig. 5b" in page
    assert "Not computed: downstream" not in page
    assert page.count("data:image/png;base64,") >= 2  # the λ grid and the sampling curve
    assert "T+classic" in page and "Could not draw" not in page

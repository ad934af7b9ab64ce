"""An endpoint whose accuracy is near chance gets a warning that the inputs may not match the
model's training transform; the results are written all the same."""

from __future__ import annotations

import math

from cli.main import main
from landscape.surfaces.basins import chance_warnings, near_chance


def test_near_chance_is_a_fifth_of_the_way_from_chance_to_certainty():
    assert near_chance(20.0, 10) and not near_chance(66.0, 10)  # the 32-px timm model at 224 px
    assert near_chance(1.5, 100) and not near_chance(30.0, 100)
    assert near_chance(55.0, 2) and not near_chance(70.0, 2)
    assert not near_chance(math.nan, 10)
    assert chance_warnings({"A": 12.0, "B": 90.0}, 10) == [
        "the test accuracy of A is 12.0%, near chance (10.0% for 10 classes): the inputs may not match "
        "the model's training transform (image size, mean and std)"]


def test_interp_and_plane_warn_about_untrained_endpoints(three_ckpts, tmp_path, capsys):
    """The fixture's checkpoints are untrained: about 10% on 10 classes."""
    small = ["--train-subset", "200", "--test-subset", "100", "--no-plots", "--quiet", "--engine", "loop"]
    code = main(["interp", *map(str, three_ckpts[:2]), "--points", "3", "--out", str(tmp_path / "i"), *small])
    out, err = capsys.readouterr()
    assert code == 0 and (tmp_path / "i" / "report.json").is_file()
    assert "warning: the test accuracy of A is" in err and "warning: the test accuracy of B is" in err
    code = main(["plane", *map(str, three_ckpts), "--grid", "2", "--out", str(tmp_path / "p"), *small])
    out, err = capsys.readouterr()
    assert code == 0 and "warning: the test accuracy of the best point is" in err

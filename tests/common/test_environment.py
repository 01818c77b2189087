"""The venv trap from FIELD-NOTES: Debian's in-toto 1.x must never be the one imported."""

from importlib.metadata import version


def test_current_in_toto_and_securesystemslib_are_imported() -> None:
    import in_toto
    import requests
    import securesystemslib
    import urllib3

    assert int(version("in-toto").split(".")[0]) >= 3
    assert int(version("securesystemslib").split(".")[0]) >= 1
    # The imported modules are the venv's, not /usr/lib/python3/dist-packages.
    assert "dist-packages" not in in_toto.__file__
    assert "dist-packages" not in securesystemslib.__file__
    # requests and urllib3 must come from the same place: Debian's requests
    # 2.28 with a newer urllib3 passes options urllib3 no longer takes.
    assert "dist-packages" not in requests.__file__ and "dist-packages" not in urllib3.__file__

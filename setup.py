"""Packaging glue that pyproject.toml cannot express (all metadata lives there).

The Hydra configs stay in the top-level ``conf/`` of the repository and ship inside the
package as ``migalab.conf``, in wheels and editable installs alike, so the console scripts
(``migalab-train`` ...) find them from any directory (``@hydra.main(config_path=
"pkg://migalab.conf")``).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "migalab.conf"],
    package_dir={"": "src", "migalab.conf": "conf"},
)

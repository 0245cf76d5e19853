"""`tunecluster build`: the image of your project (its requirements, its modules, tunecluster
itself), optionally pushed to a registry, with the pushed digest recorded for `up`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunecluster.backends.image_build import BuildOptions, build_project
from tunecluster.cli.app import app, errors_to_exit, say


@app.command()
@errors_to_exit
def build(
    project: Path = typer.Argument(Path("."), help="The project folder (with tunecluster.yaml, your modules, "
                                   "requirements.txt or pyproject.toml); default: this folder."),
    push: Optional[str] = typer.Option(None, "--push", help="Tag the image REGISTRY/NAME[:TAG] (TAG default: the "
                                       "project's version) and push it; `up` then runs it by digest."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="The local tag (default: <project>:<version>)."),
    gpu: bool = typer.Option(False, "--gpu", help="Add TensorFlow's CUDA libraries (tensorflow[and-cuda]) for "
                             "GPU workers (not needed with a CUDA --base)."),
    base: Optional[str] = typer.Option(None, "--base", help="Build the tunecluster image on this base "
                                       "(e.g. tensorflow/tensorflow:2.21.0-gpu); needs a tunecluster checkout."),
    from_image: Optional[str] = typer.Option(None, "--from", help="Put the project on this tunecluster image "
                                             "instead of building tunecluster:<version> from the checkout."),
):
    """Build the project image: tunecluster's image plus your requirements.txt (or pyproject.toml)
    and your project's files under /project (importable), recorded in .tunecluster/image.json;
    with --push, pushed to your registry and run by digest (image@sha256:...) on Kubernetes."""
    build_project(project, BuildOptions(tag=tag, push=push, gpu=gpu, base=base, from_image=from_image), say)

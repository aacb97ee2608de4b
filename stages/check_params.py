"""check_params: validate the whole params.yaml, so a key no stage reads (a typo) still fails the run."""

import argparse

from alphagraph.config import load_params
from alphagraph.errors import run_main
from alphagraph.log import get_logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    path = parser.parse_args().params
    load_params(path)
    get_logger("check_params").info("%s: every key known and well typed", path)


if __name__ == "__main__":
    run_main(main)

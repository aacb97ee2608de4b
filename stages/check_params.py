"""check_params: validate the whole params.yaml, so a key no stage reads (a typo) still fails the run.

Also the machine: ``device: cuda`` where torch sees no GPU fails here, before the upstream stages run.
"""

import argparse

from alphagraph.runtime.config import check_device, load_params
from alphagraph.runtime.errors import run_main
from alphagraph.runtime.log import get_logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    path = parser.parse_args().params
    params = load_params(path)
    check_device(params.device, path)
    get_logger("check_params").info("%s: every key known and well typed", path)


if __name__ == "__main__":
    run_main(main)

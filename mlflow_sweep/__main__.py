"""``python -m mlflow_sweep``: the same CLI as ``mlflow sweep``."""
from mlflow_sweep.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m ganforge``: also how launchers start it (``accelerate launch -m ganforge``, ``torchrun -m ganforge``)."""
from ganforge.cli import main

if __name__ == "__main__":  # not when re-imported as __mp_main__ by a spawned worker (DataLoader, multiprocessing)
    main()

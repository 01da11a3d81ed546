"""The parts families are built from: layers, losses, augmentations, image pools."""

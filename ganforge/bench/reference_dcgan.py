"""The reference trainer of ``ganforge bench throughput --e2e``: pytorch/examples' ``dcgan/main.py`` algorithm.

Rewritten here (not imported) so the end-to-end comparison needs no second checkout: the same data pipeline
(``torchvision.datasets.ImageFolder`` with Resize, CenterCrop, ToTensor, Normalize(0.5, 0.5); a shuffling
``DataLoader`` with 2 worker processes), the same networks (the DCGAN tutorial's G and D, D ending in a Sigmoid)
and N(0, 0.02) initialisation, ``BCELoss``, Adam(lr, (beta1, 0.999)) for both, and the same step: D on the real
batch, backward; D on ``G(z).detach()``, backward; D update; G's loss on the *same* fake batch with real labels;
G update. Like the script it prints five ``.item()`` values every step, saves the real batch and a fixed-noise
grid every 100 steps and both state dicts at the end of every epoch. Random numbers are drawn in the script's
order, so with the same ``--manualSeed`` and folder its printed losses match the script's.

Run as ``python -m ganforge.bench.reference_dcgan --dataroot DIR --outf OUT --niter 1 --manualSeed 0``.
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn


def weights_init(module: nn.Module) -> None:
    """N(0, 0.02) conv weights; BatchNorm scale N(1, 0.02), shift 0 (the DCGAN paper's initialisation)."""
    kind = type(module).__name__
    if "Conv" in kind:
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif "BatchNorm" in kind:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def generator(nz: int, ngf: int, nc: int) -> nn.Sequential:
    """z (nz x 1 x 1) -> 64x64 image: transposed convs halving the channels ngf*8 ... ngf, BatchNorm, ReLU, tanh."""
    widths = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
    return nn.Sequential(*layers, nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


class Discriminator(nn.Module):
    """64x64 image -> probability: strided convs doubling ndf ... ndf*8 (BatchNorm after the first), sigmoid."""

    def __init__(self, ndf: int, nc: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for c in (ndf, ndf * 2, ndf * 4):
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), nn.LeakyReLU(0.2, inplace=True)]
        self.main = nn.Sequential(*layers, nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


def folder_loader(dataroot: str, image_size: int, batch_size: int, workers: int):
    """ImageFolder (RGB) resized, centre-cropped and scaled to [-1, 1], shuffled by the global torch RNG."""
    import torchvision.datasets as dset
    import torchvision.transforms as T

    dataset = dset.ImageFolder(root=dataroot, transform=T.Compose([
        T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


class ReferenceStep:
    """One D and one G update of the script, on a batch it is handed (the test drives it on a fixed batch)."""

    def __init__(self, netG: nn.Module, netD: nn.Module, nz: int, lr: float, beta1: float,
                 device: torch.device):
        self.netG, self.netD, self.nz, self.device = netG, netD, nz, device
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(netD.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optG = torch.optim.Adam(netG.parameters(), lr=lr, betas=(beta1, 0.999))

    def __call__(self, real: torch.Tensor) -> tuple[float, float, float, float, float]:
        """(errD, errG, D(x), D(G(z)) before D's update, D(G(z)) after it), as the script prints them."""
        netG, netD, criterion = self.netG, self.netD, self.criterion
        netD.zero_grad()
        real = real.to(self.device)
        label = torch.full((real.size(0),), 1.0, dtype=real.dtype, device=self.device)
        out = netD(real)
        err_real = criterion(out, label)
        err_real.backward()
        d_x = out.mean().item()
        noise = torch.randn(real.size(0), self.nz, 1, 1, device=self.device)
        fake = netG(noise)
        label.fill_(0.0)
        out = netD(fake.detach())
        err_fake = criterion(out, label)
        err_fake.backward()
        d_g_z1 = out.mean().item()
        err_d = err_real + err_fake
        self.optD.step()
        netG.zero_grad()
        label.fill_(1.0)  # G is scored against the real label
        out = netD(fake)
        err_g = criterion(out, label)
        err_g.backward()
        d_g_z2 = out.mean().item()
        self.optG.step()
        return err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2


def build(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3, device: torch.device = torch.device("cpu")):
    """G then D, each initialised right after it is built (the script's order of random draws)."""
    netG = generator(nz, ngf, nc).to(device)
    netG.apply(weights_init)
    netD = Discriminator(ndf, nc).to(device)
    netD.apply(weights_init)
    return netG, netD


def train(dataroot: str, outf: str, *, niter: int = 1, batch_size: int = 64, image_size: int = 64, workers: int = 2,
          nz: int = 100, ngf: int = 64, ndf: int = 64, lr: float = 2e-4, beta1: float = 0.5, seed: int = 0,
          max_steps: Optional[int] = None, log: Callable[[str], None] = print) -> int:
    """The script's main loop on CPU; returns the number of steps run (``max_steps`` stops it early)."""
    import torchvision.utils as vutils

    Path(outf).mkdir(parents=True, exist_ok=True)
    random.seed(seed)
    torch.manual_seed(seed)
    device = torch.device("cpu")
    loader = folder_loader(dataroot, image_size, batch_size, workers)
    netG, netD = build(nz, ngf, ndf, 3, device)
    fixed_noise = torch.randn(batch_size, nz, 1, 1, device=device)
    step = ReferenceStep(netG, netD, nz, lr, beta1, device)
    done = 0
    for epoch in range(niter):
        for i, (real, _) in enumerate(loader):
            err_d, err_g, d_x, d1, d2 = step(real)
            log(f"[{epoch}/{niter}][{i}/{len(loader)}] Loss_D: {err_d:.4f} Loss_G: {err_g:.4f} D(x): {d_x:.4f} "
                f"D(G(z)): {d1:.4f} / {d2:.4f}")
            if i % 100 == 0:
                vutils.save_image(real, f"{outf}/real_samples.png", normalize=True)
                vutils.save_image(netG(fixed_noise).detach(), f"{outf}/fake_samples_epoch_{epoch:03d}.png",
                                  normalize=True)
            done += 1
            if max_steps is not None and done >= max_steps:
                break
        torch.save(netG.state_dict(), f"{outf}/netG_epoch_{epoch}.pth")
        torch.save(netD.state_dict(), f"{outf}/netD_epoch_{epoch}.pth")
        if max_steps is not None and done >= max_steps:
            break
    return done


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataroot", required=True)
    p.add_argument("--outf", default=".")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batchSize", type=int, default=64)
    p.add_argument("--imageSize", type=int, default=64)
    p.add_argument("--nz", type=int, default=100)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--niter", type=int, default=25)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--manualSeed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (not in the script)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    n = train(a.dataroot, a.outf, niter=a.niter, batch_size=a.batchSize, image_size=a.imageSize, workers=a.workers,
              nz=a.nz, ngf=a.ngf, ndf=a.ndf, lr=a.lr, beta1=a.beta1, seed=a.manualSeed, max_steps=a.steps)
    print(f"reference: {n} steps in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

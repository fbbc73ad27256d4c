"""VAAL: pick the candidates that a discriminator, trained against a VAE's latent codes, deems least likely labeled.

Sinha, Ebrahimi & Darrell, "Variational Adversarial Active Learning", ICCV 2019; reference code:
https://github.com/sinhasam/vaal (commit 67263f3): model.py (`VAE`, `Discriminator`), solver.py (`Solver.train`,
`Solver.vae_loss`), sampler.py (`AdversarySampler.sample`). tests/fixtures/vaal.npz holds its losses, one
training iteration and its picks on fixed inputs.

How it fits the harness. The authors train the VAE and the discriminator in the task model's loop, on the same
batches, but no loss crosses between them and the task model: training the pair at selection time instead, here in
`score` (fresh each cycle, as their main.py builds them per split), is the same computation, and leaves the
backbone's training as it is for every other strategy, by construction (it has no auxiliary head). It reads the
images through the "images" and "labeled_images" inputs: the candidates and the labeled set as the network sees them
(normalised, resized when the run resizes, un-augmented). Its randomness (initial weights, batches, the
reparameterisation's noise) comes from one seed drawn from `inputs.rng`; torch's global generators are restored
after the initialisation.

Faithful to the authors: the VAE loss (mean squared reconstruction error + beta * the KL divergence summed over
the batch), the VAE's adversarial term (BCE of the discriminator on the labeled and the unlabeled codes, both
against 1), the discriminator's (labeled 1, unlabeled 0), the codes being the means mu; `vae_steps` VAE steps,
then `adv_steps` discriminator steps on the last batches, each further step on new ones; Adam at 5e-4; their
initialisation (kaiming-normal convolutions and linears, which leaves `fc_mu`, `fc_logvar` and the transposed
convolutions at torch's defaults, as their `weight_init` loop does); iterations = images x epochs // batch size.
The pool is the labeled set plus the candidates (the authors' is the whole training set: the same without
--subset).

Deviations, named: `vae_epochs` defaults to 1, not the authors' 100 (their 100 epochs over CIFAR-10's 50k images
are 39k iterations of a 23M-parameter VAE per cycle: hours on a CPU); `scoring_bn=running` scores with the batch-norm
layers' running statistics, so that a candidate's score does not depend on which candidates share its batch (the
authors' sampler leaves the VAE in training mode: `scoring_bn=batch`). A labeled set smaller than a batch is one
batch (the authors' `drop_last` loader would yield none and loop forever); a last batch of one image is skipped
(batch norm cannot train on it), as the trainer skips it. Candidates are ranked by the discriminator's logit, the
same order as its sigmoid output without the sigmoid's saturation at 1. The discriminator step and the scores
run the encoder alone (theirs the whole VAE, whose decoder's batch-norm statistics no score reads).

The architecture follows the image size: the authors' encoder halves 32x32 images four times (128, 256, 512, 1024
channels, to 2x2), and its decoder doubles back from 4x4 with three transposed convolutions; here the encoder
halves each side as often as both sides are divisible by 2, at most 4 times (32x32: the authors' VAE exactly;
digits' 8x8: three times, to 1x1), and needs at least 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import UserError
from bench.core.seeding import globals_seeded_with
from strategies.base import PoolInputs, Strategy

WIDTHS = (128, 256, 512, 1024)  # the authors' encoder channels, stage by stage (each stage halves the sides)
MIN_STAGES = 2  # one transposed convolution at least: fewer would not be the authors' encoder-decoder pair
SCORING_BN = ("running", "batch")


def vae_stages(height: int, width: int) -> int:
    """How many times the encoder halves the sides: as often as both are divisible by 2, at most 4 (0 if < 2)."""
    stages = 0
    while stages < len(WIDTHS) and height % 2 ** (stages + 1) == 0 and width % 2 ** (stages + 1) == 0:
        stages += 1
    return stages if stages >= MIN_STAGES else 0


def image_size_refusal(height: int, width: int) -> str | None:
    """Why no VAE fits height x width images, in one line, or None."""
    if vae_stages(height, width):
        return None
    fit = max(4, 4 * round(max(height, width) / 4))
    return (f"Strategy 'vaal' cannot fit a VAE to {height}x{width} images: its encoder halves both sides at least "
            f"{MIN_STAGES} times (4 at 32x32, as the authors'), so both must be divisible by 4. Resize them with "
            f"--image-size (e.g. {fit}) or drop vaal.")


class VAE(nn.Module):
    """The authors' VAE (model.py), its depth following the image size; module names as theirs, so that their
    state dict loads into it at 32x32."""

    def __init__(self, channels: int, height: int, width: int, z_dim: int = 32) -> None:
        super().__init__()
        stages = vae_stages(height, width)
        if not stages:
            raise UserError(image_size_refusal(height, width))
        widths = WIDTHS[:stages]
        h, w = height >> stages, width >> stages  # the encoder's last map (2x2 at 32x32)
        encoder: list[nn.Module] = []
        for c_in, c_out in zip((channels, *widths[:-1]), widths, strict=True):
            encoder += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        self.encoder = nn.Sequential(*encoder, nn.Flatten())  # [B, widths[-1] * h * w]
        self.fc_mu = nn.Linear(widths[-1] * h * w, z_dim)
        self.fc_logvar = nn.Linear(widths[-1] * h * w, z_dim)
        decoder: list[nn.Module] = [nn.Linear(z_dim, widths[-1] * 4 * h * w),  # to the decoder's first map, 2h x 2w
                                    nn.Unflatten(1, (widths[-1], 2 * h, 2 * w))]
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True):
            decoder += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        self.decoder = nn.Sequential(*decoder, nn.ConvTranspose2d(widths[0], channels, 1))
        for block in (self.encoder, self.decoder):  # the authors' weight_init reaches the Sequentials' members only
            block.apply(_kaiming)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, C, H, W] -> mu, logvar, each [B, z_dim]."""
        code = self.encoder(x)
        return self.fc_mu(code), self.fc_logvar(code)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction [B, C, H, W], mu and logvar [B, z_dim]; eps [B, z_dim] is the reparameterisation's noise."""
        mu, logvar = self.encode(x)
        return self.decoder(eps * (0.5 * logvar).exp() + mu), mu, logvar


class Discriminator(nn.Module):
    """The authors' discriminator: latent code -> probability that it is a labeled image's."""

    def __init__(self, z_dim: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, 512), nn.ReLU(True), nn.Linear(512, 512), nn.ReLU(True),
                                 nn.Linear(512, 1), nn.Sigmoid())
        self.net.apply(_kaiming)

    def logit(self, z: torch.Tensor) -> torch.Tensor:
        """[B, z_dim] -> [B], before the sigmoid."""
        return self.net[:-1](z).squeeze(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # [B, 1]


def _kaiming(m: nn.Module) -> None:
    """model.py's kaiming_init (ConvTranspose2d is neither of its types: torch's default stays)."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------------------- the losses


def vae_loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float) -> torch.Tensor:
    """solver.py's vae_loss: mean squared error + beta * KL divergence to N(0, I), summed over the batch."""
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return F.mse_loss(recon, x) + kld * beta


def _bce(p: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy(p, torch.full_like(p, target))


def vae_step_losses(vae: VAE, disc: Discriminator, labeled: torch.Tensor, unlabeled: torch.Tensor,
                    eps_labeled: torch.Tensor, eps_unlabeled: torch.Tensor, beta: float,
                    adversary: float) -> dict[str, torch.Tensor]:
    """The terms of one VAE step (solver.py): each set's VAE loss, and the adversarial term that rewards codes
    the discriminator takes for labeled ones, from both sets."""
    recon, mu, logvar = vae(labeled, eps_labeled)
    unsup = vae_loss(labeled, recon, mu, logvar, beta)
    recon_u, mu_u, logvar_u = vae(unlabeled, eps_unlabeled)
    transductive = vae_loss(unlabeled, recon_u, mu_u, logvar_u, beta)
    adversarial = _bce(disc(mu), 1.0) + _bce(disc(mu_u), 1.0)
    return {"unsup": unsup, "transductive": transductive, "adversarial": adversarial,
            "total": unsup + transductive + adversary * adversarial}


def discriminator_loss(vae: VAE, disc: Discriminator, labeled: torch.Tensor, unlabeled: torch.Tensor) -> torch.Tensor:
    """The discriminator's step (solver.py): labeled codes are 1, unlabeled 0; the VAE runs without gradient, in
    training mode as there (its batch-norm statistics move)."""
    with torch.no_grad():
        mu, mu_u = vae.encode(labeled)[0], vae.encode(unlabeled)[0]
    return _bce(disc(mu), 1.0) + _bce(disc(mu_u), 0.0)


Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


def train_vaal(vae: VAE, disc: Discriminator, batches: Batches, iterations: int,
               noise: Callable[[torch.Tensor], torch.Tensor], vae_steps: int = 2, adv_steps: int = 1,
               beta: float = 1.0, adversary: float = 1.0, lr: float = 5e-4) -> dict[str, float]:
    """Solver.train without its task model: per iteration vae_steps VAE steps, then adv_steps discriminator
    steps, each on a new (labeled, unlabeled) pair of batches except the first discriminator step, which reuses the
    last VAE step's. noise(x): the reparameterisation's draw for batch x, [B, z_dim]. Returns the last iteration's
    losses."""
    opt_vae, opt_disc = torch.optim.Adam(vae.parameters(), lr=lr), torch.optim.Adam(disc.parameters(), lr=lr)
    vae.train()
    disc.train()
    last: dict[str, float] = {}
    for _ in range(iterations):
        labeled, unlabeled = next(batches)
        for count in range(vae_steps):
            losses = vae_step_losses(vae, disc, labeled, unlabeled, noise(labeled), noise(unlabeled), beta, adversary)
            opt_vae.zero_grad()
            losses["total"].backward()
            opt_vae.step()
            if count < vae_steps - 1:
                labeled, unlabeled = next(batches)
        for count in range(adv_steps):
            loss = discriminator_loss(vae, disc, labeled, unlabeled)
            opt_disc.zero_grad()
            loss.backward()
            opt_disc.step()
            if count < adv_steps - 1:
                labeled, unlabeled = next(batches)
        last = {**{k: v.detach() for k, v in losses.items()}, "discriminator": loss.detach()}
    return {k: float(v) for k, v in last.items()}


@torch.no_grad()
def discriminator_logits(vae: VAE, disc: Discriminator, images: torch.Tensor, batch_size: int,
                         batch_stats: bool = False) -> torch.Tensor:
    """[n] the discriminator's logit on each image's code mu. batch_stats: the VAE in training mode, as the
    authors' sampler leaves it (each batch normalised by its own statistics); else with its running statistics."""
    vae.train(batch_stats)
    disc.eval()
    bounds = _batch_bounds(images.shape[0], batch_size)
    return torch.cat([disc.logit(vae.encode(images[a:b])[0]) for a, b in bounds])  # [n]


def _batch_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """Consecutive batches of `size` covering 0..n; a last batch of one joins the one before (batch norm cannot
    normalise one image by its own statistics)."""
    bounds = [(a, min(a + size, n)) for a in range(0, n, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _stream(n: int, size: int, generator: torch.Generator, device: torch.device,
            whole_only: bool) -> Iterator[torch.Tensor]:
    """Positions in batches, reshuffled at each pass (a SubsetRandomSampler's loader read forever). whole_only: full
    batches only (the authors' drop_last), or the whole set when it is smaller than a batch; otherwise a last
    partial batch is kept unless it is one image."""
    size = min(size, n)
    while True:
        order = torch.randperm(n, generator=generator, device=device)
        for a in range(0, n, size):
            part = order[a:a + size]
            if part.numel() == size or (not whole_only and part.numel() > 1):
                yield part


class VAAL(Strategy):
    """Least likely labeled to a VAE's adversary (Sinha, Ebrahimi & Darrell, VAAL, ICCV 2019).

    Variational Adversarial Active Learning: a VAE and a discriminator trained on the images at selection time."""

    name = "vaal"
    needs = frozenset({"images", "labeled_images"})
    params = {"vae_epochs": 1.0, "batch_size": 128, "latent_dim": 32, "beta": 1.0, "adversary_param": 1.0,
              "vae_steps": 2, "adv_steps": 1, "lr": 5e-4, "scoring_bn": "running"}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        for key, least in (("batch_size", 2), ("latent_dim", 1), ("vae_steps", 1), ("adv_steps", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UserError(f"The 'vaal.{key}' parameter must be an integer of at least {least}. "
                                f"Got {value!r} instead.")
        for key, positive in (("vae_epochs", True), ("lr", True), ("beta", False), ("adversary_param", False)):
            value = getattr(self, key)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < 0 or (positive and value == 0)):
                kind = "a positive" if positive else "a non-negative"
                raise UserError(f"The 'vaal.{key}' parameter must be {kind} finite number. Got {value!r} instead.")
        if self.scoring_bn not in SCORING_BN:
            raise UserError(f"The 'vaal.scoring_bn' parameter must be one of {', '.join(SCORING_BN)}. "
                            f"Got {self.scoring_bn!r} instead.")

    def check_images(self, channels: int, height: int, width: int) -> None:
        refusal = image_size_refusal(height, width)
        if refusal:
            raise UserError(refusal)

    def score(self, inputs: PoolInputs) -> torch.Tensor:
        """[n] minus the discriminator's logit: the least likely labeled score highest."""
        images, labeled, device = inputs.images, inputs.labeled_images, inputs.device
        seed = int(inputs.rng.integers(2**63))
        with globals_seeded_with(seed, device):  # the modules' initialisation draws from the global generators
            vae = VAE(*images.shape[1:], z_dim=self.latent_dim).to(device)
            disc = Discriminator(self.latent_dim).to(device)
        generator = torch.Generator(device=device).manual_seed(seed)
        streams = (_stream(labeled.shape[0], self.batch_size, generator, device, whole_only=True),
                   _stream(images.shape[0], self.batch_size, generator, device, whole_only=False))
        batches = ((labeled[a], images[b]) for a, b in zip(*streams, strict=True))  # both endless
        iterations = max(1, int((labeled.shape[0] + images.shape[0]) * self.vae_epochs) // self.batch_size)
        train_vaal(vae, disc, batches, iterations,
                   lambda mu: torch.randn(mu.shape[0], self.latent_dim, generator=generator, device=device),
                   self.vae_steps, self.adv_steps, self.beta, self.adversary_param, self.lr)
        return -discriminator_logits(vae, disc, images, self.batch_size, self.scoring_bn == "batch")

"""The spectrum constraint (Liu, Gousseau & Xia, ICPR 2016): keep the exemplar's Fourier modulus.

Why: a Gram loss on an edge-trained descriptor (vgg16-hed) is blind to energy at frequencies the
exemplar lacks, so the optimizer leaves pixel-scale hatching that lowers the descriptor's loss. The
constraint adds ``mean((x - P(x))^2)``, P(x) being the image with the exemplar's Fourier modulus that
is nearest to x: per frequency, the exemplar's three channel coefficients times one phase shift
shared by the channels (so they keep the exemplar's phase relations, i.e. its colour structure),

    F(P(x))_k = F(u)_k * s / |s|,   s = sum_k F(x)_k conj(F(u)_k)   (k: the channel),

with P(x) held constant in each gradient (Liu et al. eq. 6-7). It is a training and optimization
loss only: exported graphs carry no FFT.

The reference F(u) must live on the output's frequency grid and describe a periodic image (the
FFT sees x as tiled). An exemplar has any size and is not periodic: its border jumps add a bright
cross to its spectrum, which the projection copies into the output as streaks. `reference_spectrum`:

- cuts the exemplar into windows of the output's size (half-overlapping, Welch's method), or of
  the exemplar's own length along an axis where it is shorter than the output;
- makes each window periodic by Moisan's periodic + smooth decomposition ("Periodic plus smooth
  image decomposition", 2011): the smooth part carries the border jumps and is dropped, which
  removes the cross and keeps the texture;
- along an axis shorter than the output, tapers the window to zero at its ends (Tukey window) and
  zero-pads it, so the finer frequency grid samples the exemplar's spectrum smoothed by the
  window's transform rather than a comb (tiling the exemplar would ask for an output that repeats
  it exactly), and rescales it to the window's variance per channel;
- averages the windows' 3x3 cross-spectra C(f) = E[F(f) F(f)^H] and keeps, per frequency, each
  channel's power (|F_k| = sqrt(C_kk)) and the channels' phase relations from C's principal
  eigenvector. One window (an exemplar of the output's size) gives exactly Liu et al.'s F(u);
  many give a spectrum of the whole exemplar, not of one crop of it (a centred crop's colours
  differ from the exemplar's: on red-peppers at 128 px it fought the colour term, 0.016 colour
  distance against 0.003).
- sets the mean (DC) to the whole exemplar's mean colour.
"""

from __future__ import annotations

import math

import torch

TUKEY_TAPER = 0.25  # fraction of a padded axis's length tapered at each end


def periodic_component(u: torch.Tensor) -> torch.Tensor:
    """Moisan's periodic component p of images [..., H, W] (u = p + s, s smooth, carrying the border jumps).

    s solves the discrete Poisson equation whose right-hand side is the jump across the image's
    border: v sums, at each border pixel, the difference to the pixel on the opposite side.
    """
    u64 = u.double()
    h, w = u64.shape[-2:]
    v = torch.zeros_like(u64)
    v[..., 0, :] += u64[..., -1, :] - u64[..., 0, :]
    v[..., -1, :] += u64[..., 0, :] - u64[..., -1, :]
    v[..., :, 0] += u64[..., :, -1] - u64[..., :, 0]
    v[..., :, -1] += u64[..., :, 0] - u64[..., :, -1]
    q = torch.arange(h, dtype=torch.float64, device=u.device).view(h, 1)
    r = torch.arange(w, dtype=torch.float64, device=u.device).view(1, w)
    denom = 2 * torch.cos(2 * math.pi * q / h) + 2 * torch.cos(2 * math.pi * r / w) - 4
    denom[0, 0] = 1.0  # the smooth part has zero mean
    s_hat = torch.fft.fft2(v) / denom
    s_hat[..., 0, 0] = 0
    return (u64 - torch.fft.ifft2(s_hat).real).to(u.dtype)


def _tukey(n: int, taper: float, device) -> torch.Tensor:
    """A window of length n, flat in the middle, cosine-tapered to zero over `taper` of n at each end."""
    edge = max(1, int(round(taper * n)))
    t = torch.ones(n, dtype=torch.float64, device=device)
    ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(edge, dtype=torch.float64, device=device) + 0.5) / edge)
    t[:edge] = ramp
    t[n - edge:] = ramp.flip(0)
    return t


def _starts(length: int, window: int) -> list[int]:
    """Window positions along an axis: every window/2 px, the last flush with the end."""
    if window >= length:
        return [0]
    step = max(1, window // 2)
    return sorted(set(list(range(0, length - window + 1, step)) + [length - window]))


def _window_spectra(exemplar: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """FFTs [N, C, height, width] (fp64) of the exemplar's periodic, mean-free windows (see the module)."""
    u = exemplar.double()[0]
    h, w = u.shape[-2:]
    wh, ww = min(h, height), min(w, width)
    windows = torch.stack([periodic_component(u[:, t:t + wh, l:l + ww]) for t in _starts(h, wh) for l in _starts(w, ww)])
    windows = windows - windows.mean(dim=(-2, -1), keepdim=True)
    if (wh, ww) != (height, width):
        variance = windows.pow(2).mean(dim=(-2, -1), keepdim=True)
        if wh < height:
            windows = windows * _tukey(wh, TUKEY_TAPER, u.device).view(wh, 1)
        if ww < width:
            windows = windows * _tukey(ww, TUKEY_TAPER, u.device).view(1, ww)
        top, left = (height - wh) // 2, (width - ww) // 2
        windows = torch.nn.functional.pad(windows, (left, width - ww - left, top, height - wh - top))
        windows = windows - windows.mean(dim=(-2, -1), keepdim=True)
        windows = windows * (variance / windows.pow(2).mean(dim=(-2, -1), keepdim=True).clamp_min(1e-30)).sqrt()
    return torch.fft.fft2(windows)


def reference_spectrum(exemplar: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F(u) for the spectrum loss at an output size: [B, C, height, width] complex64 for exemplars [B, C, h, w]."""
    if exemplar.shape[0] > 1:
        return torch.cat([reference_spectrum(e[None], height, width) for e in exemplar])
    spectra = _window_spectra(exemplar, height, width)  # [N, C, H, W]
    f = spectra.permute(2, 3, 1, 0)  # [H, W, C, N]
    cross = f @ f.conj().transpose(-1, -2) / spectra.shape[0]  # [H, W, C, C], Hermitian
    _, vectors = torch.linalg.eigh(cross)
    principal = vectors[..., -1]  # [H, W, C], the largest eigenvalue's
    power = torch.diagonal(cross, dim1=-2, dim2=-1).real.clamp_min(0)
    phase = torch.where(principal.abs() > 0, principal / principal.abs().clamp_min(1e-300), torch.ones_like(principal))
    ref = (power.sqrt() * phase).permute(2, 0, 1)[None]
    ref[..., 0, 0] = exemplar.double().mean(dim=(-2, -1)) * (height * width)
    return ref.to(torch.complex64)


def project(x: torch.Tensor, ref_spectrum: torch.Tensor) -> torch.Tensor:
    """P(x): the image with the reference's modulus and one phase shift per frequency shared by the channels."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        fx = torch.fft.fft2(x.float())
        s = (fx * ref_spectrum.conj()).sum(dim=1, keepdim=True)
        magnitude = s.abs()
        phase = torch.where(magnitude > 0, s / magnitude.clamp_min(1e-30), torch.ones_like(s))
        return torch.fft.ifft2(ref_spectrum * phase).real


def spectrum_loss(x: torch.Tensor, ref_spectrum: torch.Tensor) -> torch.Tensor:
    """mean((x - P(x))^2) per batch item, P(x) constant under autograd (Liu et al. 2016)."""
    with torch.no_grad():
        target = project(x.detach(), ref_spectrum)
    return (x.float() - target).pow(2).mean(dim=(1, 2, 3))

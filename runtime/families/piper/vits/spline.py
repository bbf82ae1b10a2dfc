"""Inverse of a monotonic rational-quadratic spline with identity tails.

The spline maps ``[-bound, bound]`` onto itself through ``num_bins`` bins whose widths,
heights and knot derivatives come from a network; outside the interval it is the identity
(derivative 1 at both ends). This file inverts it in closed form: inside a bin the forward map
is a ratio of quadratics, so finding ``x`` for a given ``y`` is solving one quadratic equation
(Durkan et al., "Neural Spline Flows", 2019, eq. 6 and its inverse in appendix A).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def _knots(unnormalized: torch.Tensor, bound: float, minimum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes and cumulative knot positions spanning ``[-bound, bound]``."""
    num_bins = unnormalized.shape[-1]
    sizes = minimum + (1 - minimum * num_bins) * torch.softmax(unnormalized, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0), value=0.0)
    knots = 2 * bound * knots - bound
    knots = torch.cat([torch.full_like(knots[..., :1], -bound), knots[..., 1:-1],
                       torch.full_like(knots[..., :1], bound)], dim=-1)
    return knots[..., 1:] - knots[..., :-1], knots


def inverse_rational_quadratic(
    y: torch.Tensor,
    unnormalized_widths: torch.Tensor,
    unnormalized_heights: torch.Tensor,
    unnormalized_derivatives: torch.Tensor,
    bound: float,
) -> torch.Tensor:
    """``x`` such that ``spline(x) = y``; the last axis of the parameters indexes the bins.

    ``unnormalized_derivatives`` holds the ``num_bins - 1`` inner knots; both outer knots get
    derivative 1 so the spline joins the identity tails smoothly.
    """
    inside = (y >= -bound) & (y <= bound)
    yc = y.clamp(-bound, bound)
    edge = math.log(math.expm1(1 - MIN_DERIVATIVE))
    derivs = F.pad(unnormalized_derivatives, (1, 1), value=edge)
    derivs = MIN_DERIVATIVE + F.softplus(derivs)
    widths, cum_widths = _knots(unnormalized_widths, bound, MIN_BIN_WIDTH)
    heights, cum_heights = _knots(unnormalized_heights, bound, MIN_BIN_HEIGHT)

    # Bin of each y: the last knot at or below it (the top knot is nudged so y = bound fits).
    search = torch.cat([cum_heights[..., :-1], cum_heights[..., -1:] + 1e-6], dim=-1)
    bin_index = (yc.unsqueeze(-1) >= search).sum(dim=-1, keepdim=True) - 1

    def pick(t: torch.Tensor) -> torch.Tensor:
        return torch.gather(t, -1, bin_index).squeeze(-1)

    x_k, w_k = pick(cum_widths), pick(widths)
    y_k, h_k = pick(cum_heights), pick(heights)
    d_k, d_k1 = pick(derivs), pick(derivs[..., 1:])
    s_k = h_k / w_k

    dy = yc - y_k
    curvature = d_k + d_k1 - 2 * s_k
    a = dy * curvature + h_k * (s_k - d_k)
    b = h_k * d_k - dy * curvature
    c = -s_k * dy
    discriminant = (b.pow(2) - 4 * a * c).clamp_min(0)
    theta = (2 * c) / (-b - torch.sqrt(discriminant))
    x = theta * w_k + x_k
    return torch.where(inside, x, y)

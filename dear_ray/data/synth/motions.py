"""The actor: a rimmed polygon sprite, its motion classes, rasterisation and boxes.

Coordinates are continuous pixels of the frame, x to the right, y DOWN, the frame spanning
``[0, size)`` on both axes; pixel (row i, column j) covers ``[j, j+1) x [i, i+1)``. Angles grow
clockwise on screen (y points down), so `rotate_cw` and `orbit_cw` look clockwise in the video.

The world is a torus: an actor leaving one edge re-enters at the opposite one, and a box that
straddles an edge is split into up to four boxes. A path that fits in the frame is placed uniformly
at random inside it; a longer one (most translations) starts anywhere and wraps.

Only the motion depends on the class. Shape, colour, rim colour, radius (mean `actor_radius`,
+-22%), start, phase and speed (mean `actor_speed`, +-30%) are drawn from the video's own random
stream for every class alike (docs/synthetic_data.md: smaller actors or no rim made the motion
unlearnable; the defaults and what they were measured to give are there too).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

#: Motion classes in their default order: the first K are known, the next U unknown (the demo: 10
#: known, 6 unknown); the rest are drawn only when named (`SynthParams.classes`), as the demo's
#: pretraining set does. A motion's index here keys its videos' random streams, so new motions are
#: appended and the videos of the others keep their bytes. Why `spiral` is not among the default
#: unknowns and what each later family looks like: docs/synthetic_data.md.
MOTIONS: tuple[str, ...] = (
    "move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "grow", "shrink",
    "orbit_cw", "orbit_ccw", "move_up_left", "move_down_right", "bounce", "zigzag", "pulse",
    "shake", "move_up_right", "move_down_left", "spiral",
    # generator 1.3: families for a pretraining set whose classes the demo never uses
    "spiral_in", "wobble", "figure_eight", "swing", "square_cw", "accelerate", "decelerate",
    "stop_go", "out_and_back", "teleport",
    # generator 1.4: the validation unknowns (`VAL_UNKNOWN_MOTIONS`), for choosing detector settings
    "square_ccw", "hop", "nod",
)
#: The validation unknown motions (split `val_unknown`): neither known, nor test unknown, nor
#: pretraining classes of the demo; a detector's hyper-parameters are chosen on them, never on the
#: test unknowns (docs/synthetic_data.md, docs/scores.md).
VAL_UNKNOWN_MOTIONS: tuple[str, ...] = ("square_ccw", "hop", "nod")

# Unit polygons (vertices on or inside the unit circle, counter-clockwise order not required).
# None has a rotational symmetry of order > 2, so rotation is visible frame to frame.
_SHAPES: dict[str, np.ndarray] = {
    "triangle": np.array([(1.0, 0.0), (-0.75, 0.62), (-0.75, -0.62)]),
    "bar": np.array([(1.0, 0.38), (-1.0, 0.38), (-1.0, -0.38), (1.0, -0.38)]),
    "ell": np.array([(-0.6, -0.85), (0.0, -0.85), (0.0, 0.25), (0.75, 0.25), (0.75, 0.85), (-0.6, 0.85)]),
    "arrow": np.array([(1.0, 0.0), (0.15, 0.72), (0.15, 0.3), (-0.95, 0.3), (-0.95, -0.3), (0.15, -0.3),
                       (0.15, -0.72)]),
    "tee": np.array([(-0.9, -0.85), (0.9, -0.85), (0.9, -0.3), (0.28, -0.3), (0.28, 0.95), (-0.28, 0.95),
                     (-0.28, -0.3), (-0.9, -0.3)]),
}
SHAPES: tuple[str, ...] = tuple(_SHAPES)
_SHAPES = {k: v / np.linalg.norm(v, axis=1).max() for k, v in _SHAPES.items()}

#: Rim speed of rotate_cw/ccw as a multiple of the actor's speed (at 1, the measured rotation classes
#: were the least learnable; the fastest order-2 shape aliases only past 90 degrees a frame).
ROTATION_RIM_SPEED = 2.0
#: Orbit radius range as a fraction of the frame side (drawn per video).
ORBIT_RADIUS = (0.12, 0.2)

_LINEAR = {
    "move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1),
    "move_up_left": (-1, -1), "move_down_right": (1, 1), "move_up_right": (1, -1), "move_down_left": (-1, 1),
}


@dataclass(frozen=True)
class Actor:
    """One video's actor.

    Attributes:
        shape: a key of `SHAPES`.
        radius: circumradius in pixels at scale 1 (rim not included).
        rim: rim width in pixels.
        colour: RGB fill, floats in [0, 255].
        rim_colour: black (0) or white (255) RGB.
        speed: pixels per frame at 64x64 scaled to the frame size (rim speed for rotations).
    """

    shape: str
    radius: float
    rim: float
    colour: tuple[float, float, float]
    rim_colour: tuple[float, float, float]
    speed: float


@dataclass(frozen=True)
class Trajectory:
    """Per-frame pose of the actor; arrays of shape (T,). `cx`, `cy` may leave [0, size) (torus)."""

    cx: np.ndarray
    cy: np.ndarray
    scale: np.ndarray
    angle: np.ndarray


def sample_actor(rng: np.random.Generator, size: int, *, radius: float = 9.0, speed: float = 3.0,
                 rim: float = 1.5) -> Actor:
    """Draw an actor whose every property is independent of the class.

    Args:
        rng: the video's random stream.
        size: frame side in pixels; radius, rim and speed scale with ``size / 64``.
        radius: mean circumradius in pixels at 64x64; each actor draws uniformly in
            ``radius * [7/9, 11/9]`` (7-11 px at 9).
        speed: mean speed in pixels per frame at 64x64; each actor draws uniformly in +-30%.
        rim: rim width in pixels at 64x64 (at least 1 px in the frame).
    """
    unit = size / 64.0
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    radius = float(rng.uniform(7.0 / 9.0, 11.0 / 9.0)) * radius * unit
    hue, sat, val = rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0)
    colour = tuple(255.0 * c for c in colorsys.hsv_to_rgb(hue, sat, val))
    rim_colour = (255.0,) * 3 if rng.random() < 0.5 else (0.0,) * 3
    speed = speed * unit * float(rng.uniform(0.7, 1.3))
    return Actor(shape, radius, max(1.0, rim * unit), colour, rim_colour, speed)


def trajectory(motion: str, actor: Actor, rng: np.random.Generator, *, frames: int, size: int) -> Trajectory:
    """The actor's pose in each frame for one motion class.

    Args:
        motion: a name from `MOTIONS`.
        actor: the video's actor (its speed and radius set the motion's rates).
        rng: the video's random stream (placement, phase, initial angle).
        frames: T, the number of frames.
        size: frame side in pixels.

    Returns:
        The (T,) pose arrays.
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; known motions: {', '.join(MOTIONS)}")
    t = np.arange(frames, dtype=np.float64)
    a0 = float(rng.uniform(0, 2 * np.pi))
    phase = float(rng.uniform(0, 2 * np.pi))
    v = actor.speed
    one = np.ones(frames)
    cx, cy, scale, angle = 0 * t, 0 * t, one.copy(), a0 * one  # placed in the frame at the end
    if motion in _LINEAR:
        dx, dy = _LINEAR[motion]
        norm = np.hypot(dx, dy)
        cx, cy = v * t * dx / norm, v * t * dy / norm
    elif motion in ("rotate_cw", "rotate_ccw"):
        omega = ROTATION_RIM_SPEED * v / actor.radius
        angle = a0 + (omega if motion == "rotate_cw" else -omega) * t
    elif motion in ("grow", "shrink"):
        # the same range of scales for both (x0.67 .. x1.48 at nominal speed): size alone says nothing
        rate = np.log(2.2) / max(frames - 1, 1) * v / (3.0 * size / 64.0)
        centred = t - (frames - 1) / 2.0
        scale = np.exp(rate * centred if motion == "grow" else -rate * centred)
    elif motion in ("orbit_cw", "orbit_ccw", "spiral", "spiral_in"):
        sign = 1.0 if motion != "orbit_ccw" else -1.0
        if motion in ("spiral", "spiral_in"):  # either way round; the radius grows or shrinks
            sign = 1.0 if rng.random() < 0.5 else -1.0
            ramp = t / max(frames - 1, 1)
            rho = 0.06 * size + 0.22 * size * (ramp if motion == "spiral" else 1.0 - ramp)
        else:
            rho = float(rng.uniform(*ORBIT_RADIUS)) * size * one
        theta = phase + sign * np.cumsum(np.concatenate([[0.0], v / rho[:-1]]))
        cx, cy = rho * np.cos(theta), rho * np.sin(theta)
    elif motion == "bounce":
        period = float(rng.uniform(7.0, 10.0))
        height = 0.22 * size * v / (3.0 * size / 64.0)
        cy = -height * np.abs(np.sin(np.pi * t / period + phase))
    elif motion == "zigzag":
        direction = 1.0 if rng.random() < 0.5 else -1.0
        period = float(rng.uniform(6.0, 9.0))
        tri = 2.0 * np.abs(((t / period + phase / (2 * np.pi)) % 1.0) - 0.5) - 0.5  # in [-0.5, 0.5]
        cx, cy = direction * 0.7 * v * t, 0.3 * size * tri
    elif motion == "pulse":
        period = float(rng.uniform(5.0, 9.0))
        scale = 1.0 + 0.35 * np.sin(2 * np.pi * t / period + phase)
    elif motion == "shake":
        period = float(rng.uniform(3.5, 5.5))
        cx = 0.07 * size * np.sin(2 * np.pi * t / period + phase)
    else:
        cx, cy, scale, angle = _later_family(motion, actor, rng, t, size, a0, phase)
    reach = actor.radius * float(scale.max()) + actor.rim
    cx = cx + _place(cx, reach, size, rng)
    cy = cy + _place(cy, reach, size, rng)
    return Trajectory(cx, cy, scale, angle)


def _later_family(motion: str, actor: Actor, rng: np.random.Generator, t: np.ndarray, size: int,
                  a0: float, phase: float) -> tuple[np.ndarray, ...]:
    """Poses (cx, cy, scale, angle) of the families appended in generator 1.3 (pretraining only)
    and 1.4 (the validation unknowns: `square_ccw`, `hop`: bounce's arcs while moving sideways,
    `nod`: shake along the vertical).

    Five of them move along a direction drawn uniformly (`psi`), so only the speed profile names the
    class: `accelerate` (0 to 2 x speed), `decelerate` (2 x speed to 0), `stop_go` (bursts at 2 x
    speed between stops), `out_and_back` (out and back along one line, half a sine); `teleport`
    jumps to a random spot every 4-6 frames. The others trace a shape: `wobble` rotates back and
    forth in place (peak rate that of rotate_cw), `figure_eight` a Lissajous 1:2 curve, `swing` a
    pendulum's arc under a pivot, `square_cw` a square's sides clockwise.
    """
    frames, v, one = len(t), actor.speed, np.ones(len(t))
    cx, cy, scale, angle = 0 * t, 0 * t, one.copy(), a0 * one
    psi = float(rng.uniform(0, 2 * np.pi))
    last = max(frames - 1, 1)
    along = None  # distance along direction psi, for the five straight-line families
    if motion == "wobble":
        period = float(rng.uniform(6.0, 10.0))
        amplitude = ROTATION_RIM_SPEED * v / actor.radius * period / (2 * np.pi)
        angle = a0 + amplitude * np.sin(2 * np.pi * t / period + phase)
    elif motion == "figure_eight":
        width = float(rng.uniform(0.16, 0.24)) * size
        theta = phase + (1.0 if rng.random() < 0.5 else -1.0) * v / width * t
        cx, cy = width * np.sin(theta), 0.5 * width * np.sin(2 * theta)
    elif motion == "swing":
        length, period = float(rng.uniform(0.22, 0.3)) * size, float(rng.uniform(12.0, 16.0))
        phi = 0.6 * np.sin(2 * np.pi * t / period + phase)
        cx, cy = length * np.sin(phi), length * np.cos(phi)
    elif motion in ("square_cw", "square_ccw"):  # y down: right along the top edge, then down: cw
        side = float(rng.uniform(0.25, 0.35)) * size
        step = v * t if motion == "square_cw" else -v * t
        u = (float(rng.uniform(0, 4 * side)) + step) % (4 * side)
        edge, s = np.floor_divide(u, side), np.mod(u, side)
        cx = np.select([edge == 0, edge == 1, edge == 2], [s, side + 0 * s, side - s], 0 * s)
        cy = np.select([edge == 0, edge == 1, edge == 2], [0 * s, s, side + 0 * s], side - s)
    elif motion == "accelerate":
        along = v * t**2 / last
    elif motion == "decelerate":
        along = v * (2 * t - t**2 / last)
    elif motion == "stop_go":
        on, off = int(rng.integers(3, 5)), int(rng.integers(3, 5))
        moving = ((t + int(rng.integers(0, on + off))) % (on + off)) < on
        along = 2 * v * np.concatenate([[0.0], np.cumsum(moving[:-1])])
    elif motion == "out_and_back":
        along = float(rng.uniform(0.25, 0.35)) * size * np.sin(np.pi * t / last)
    elif motion == "hop":  # bounce's arcs while moving left or right
        period = float(rng.uniform(7.0, 10.0))
        height = 0.22 * size * v / (3.0 * size / 64.0)
        cx = (1.0 if rng.random() < 0.5 else -1.0) * 0.7 * v * t
        cy = -height * np.abs(np.sin(np.pi * t / period + phase))
    elif motion == "nod":  # shake, vertically
        period = float(rng.uniform(3.5, 5.5))
        cy = 0.07 * size * np.sin(2 * np.pi * t / period + phase)
    elif motion == "teleport":
        hold = int(rng.integers(4, 7))
        spots = rng.uniform(0, size, (frames // hold + 1, 2))
        cx, cy = spots[t.astype(int) // hold, 0], spots[t.astype(int) // hold, 1]
    if along is not None:
        cx, cy = along * np.cos(psi), along * np.sin(psi)
    return cx, cy, scale, angle


def _place(path: np.ndarray, reach: float, size: int, rng: np.random.Generator) -> float:
    """An offset putting the whole path inside the frame if it fits, else anywhere (it wraps)."""
    lo, hi = float(path.min()) - reach, float(path.max()) + reach
    if hi - lo <= size:
        return float(rng.uniform(-lo, size - hi))
    return float(rng.uniform(0, size))


def _inside(poly: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over any array shape of points."""
    inside = np.zeros(x.shape, dtype=bool)
    xj, yj = poly[-1]
    for xi, yi in poly:
        if yi != yj:
            crosses = (yi > y) != (yj > y)
            x_at = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= crosses & (x < x_at)
        xj, yj = xi, yi
    return inside


def _wrap(d: np.ndarray, size: int) -> np.ndarray:
    return (d + size / 2.0) % size - size / 2.0


def render_actor(
    background: np.ndarray, actor: Actor, traj: Trajectory, *, supersample: int = 2
) -> np.ndarray:
    """Composite the rimmed actor over a static background, anti-aliased by supersampling.

    Args:
        background: float (H, W, 3) in [0, 255].
        actor: the sprite.
        traj: its per-frame pose, (T,) arrays.
        supersample: samples per pixel along each axis.

    Returns:
        uint8 frames (T, H, W, 3).
    """
    size = background.shape[0]
    ss = supersample
    grid = (np.arange(size * ss) + 0.5) / ss
    py, px = np.meshgrid(grid, grid, indexing="ij")
    poly = _SHAPES[actor.shape]
    out = np.empty((len(traj.cx), size, size, 3), dtype=np.uint8)
    fill, rim = np.asarray(actor.colour), np.asarray(actor.rim_colour)
    for f in range(len(traj.cx)):
        dx, dy = _wrap(px - traj.cx[f], size), _wrap(py - traj.cy[f], size)
        c, s = np.cos(-traj.angle[f]), np.sin(-traj.angle[f])
        lx, ly = c * dx - s * dy, s * dx + c * dy
        r_in = actor.radius * traj.scale[f]
        inner = _inside(poly, lx / r_in, ly / r_in)
        outer = _inside(poly, lx / (r_in + actor.rim), ly / (r_in + actor.rim))
        a_in = inner.reshape(size, ss, size, ss).mean(axis=(1, 3))[..., None]
        a_out = outer.reshape(size, ss, size, ss).mean(axis=(1, 3))[..., None]
        frame = background * (1 - a_out) + rim * (a_out - a_in) + fill * a_in
        out[f] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return out


def actor_boxes(actor: Actor, traj: Trajectory, size: int) -> list[np.ndarray]:
    """Tight boxes around the rimmed actor in every frame, split where it wraps round an edge.

    Args:
        actor: the sprite.
        traj: its per-frame pose.
        size: frame side in pixels.

    Returns:
        One float32 array (N_t, 4) ``x1, y1, x2, y2`` per frame, 1 <= N_t <= 4, inside [0, size].
    """
    poly = _SHAPES[actor.shape]
    boxes = []
    for f in range(len(traj.cx)):
        c, s = np.cos(traj.angle[f]), np.sin(traj.angle[f])
        r_out = actor.radius * traj.scale[f] + actor.rim
        vx = (c * poly[:, 0] - s * poly[:, 1]) * r_out
        vy = (s * poly[:, 0] + c * poly[:, 1]) * r_out
        xs = _split(traj.cx[f] + vx.min(), traj.cx[f] + vx.max(), size)
        ys = _split(traj.cy[f] + vy.min(), traj.cy[f] + vy.max(), size)
        boxes.append(np.array([(a, b, c2, d) for a, c2 in xs for b, d in ys], dtype=np.float32))
    return boxes


def _split(lo: float, hi: float, size: int) -> list[tuple[float, float]]:
    """An interval on the circle of circumference `size`, as 1 or 2 intervals inside [0, size]."""
    if hi - lo >= size:
        return [(0.0, float(size))]
    lo_w = lo % size
    hi_w = lo_w + (hi - lo)
    if hi_w <= size:
        return [(lo_w, hi_w)]
    return [(lo_w, float(size)), (0.0, hi_w - size)]

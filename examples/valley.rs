//! Plain gradient descent against momentum on two 2-D problems, every step run through the
//! crate's kernels, with the paths drawn on contour plots: the zig-zag of gradient descent
//! across a narrow valley, and what momentum does about it.
//!
//! `cargo run --release --example valley [-- --quick] [--plot PATH]`
//!
//! The weights are an `f32` buffer of two elements, `(x, y)`. Every step computes the gradient
//! of the objective at the current weights (in `f64`, stored as `f32`) and hands it to
//! [`Executor::sgd_step`] (plain gradient descent, PyTorch's `SGD(momentum=0)`) or to
//! [`Executor::momentum_step`] with [`Momentum::heavy_ball`] (PyTorch's `SGD(momentum=m)`,
//! with and without Nesterov), on one thread.
//!
//! The two problems:
//!
//! - an ill-conditioned quadratic, `f(x, y) = (x^2 + 50 y^2) / 2`, from `(-9, 1.5)`: the
//!   curvature across the valley (`y`) is 50 times the curvature along it (`x`). Gradient
//!   descent is stable only for `lr < 2/50`; its best learning rate is close to that limit,
//!   where it zig-zags across the valley while it crawls along it;
//! - the Rosenbrock function, `f(x, y) = (1 - x)^2 + 100 (y - x^2)^2`, from `(-1.2, 1)`: a
//!   curved valley with its minimum at `(1, 1)`.
//!
//! Each method gets a fair chance: its learning rate is swept over a log grid (12 values a
//! quarter-octave apart; for the momentum methods, for each momentum in 0.5, 0.7 and 0.9), and
//! the setting that first brings `f` below a threshold is kept (ties: the lower final `f`).
//! Tuned momentum reaches the threshold several times sooner than tuned gradient descent on
//! both problems. A fourth, untuned run isolates the damping: heavy ball with momentum 0.9
//! and `lr` = gradient descent's `lr * (1 - 0.9)`, so its step along a valley of constant slope,
//! `lr / (1 - momentum)`, is gradient descent's. Across the valley the gradient alternates in
//! sign and mostly cancels in the velocity, so that run swings slowly across the valley
//! instead of zig-zagging at every step.
//!
//! Output: the sweeps and a table (settings, final `f`, distance to the minimum, steps to the
//! threshold) on stdout, and one SVG (`--plot PATH`, default `target/valley.svg`) with a
//! panel per problem: contour lines of `f` (marching squares over log-spaced levels), the
//! path of each run with a marker per step (thinned where steps are under 5 pixels apart), the
//! start and the minimum. `--quick` sweeps every other learning rate and computes the contours
//! on a coarser grid (for CI; well under a second). `--help` prints the usage; an unknown
//! argument prints it and exits with status 2.

use std::collections::HashMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;

use optkern::{Executor, Momentum, Sgd, Threads};

/// A point `(x, y)` of the plane.
type Point = (f64, f64);

const USAGE: &str = "usage: valley [--quick] [--plot PATH]\n  \
    --quick      fewer learning rates in the sweeps and a coarser contour grid (for CI)\n  \
    --plot PATH  where to write the SVG (default: target/valley.svg)";

/// The momentum coefficients swept for both momentum methods.
const MOMENTA: [f64; 3] = [0.5, 0.7, 0.9];

/// The momentum of the untuned heavy-ball run that takes gradient descent's step.
const MATCHED_MOMENTUM: f64 = 0.9;

/// The curvature ratio of the quadratic.
const KAPPA: f64 = 50.0;

/// The largest eigenvalue of the Hessian of the Rosenbrock function at its minimum,
/// `[[802, -400], [-400, 200]]`: `501 + sqrt(501^2 - 400)`.
const ROSENBROCK_MAX_CURVATURE: f64 = 1001.6006;

const TITLE: &str = "Gradient descent vs momentum through optkern's kernels (f32 weights)";

struct Options {
    quick: bool,
    plot: PathBuf,
}

/// Parses the command line; `Err(code)` means: exit with that status (usage already printed).
fn options() -> Result<Options, i32> {
    let mut options = Options {
        quick: false,
        plot: PathBuf::from("target/valley.svg"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--plot" => match args.next() {
                Some(path) => options.plot = PathBuf::from(path),
                None => {
                    eprintln!("--plot needs a path\n{USAGE}");
                    return Err(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Err(0);
            }
            other => {
                eprintln!("unknown argument `{other}`\n{USAGE}");
                return Err(2);
            }
        }
    }
    Ok(options)
}

/// The objective functions.
#[derive(Clone, Copy)]
enum Objective {
    /// `(x^2 + kappa * y^2) / 2`.
    Quadratic { kappa: f64 },
    /// `(1 - x)^2 + 100 (y - x^2)^2`.
    Rosenbrock,
}

impl Objective {
    fn value(self, (x, y): Point) -> f64 {
        match self {
            Objective::Quadratic { kappa } => 0.5 * (x * x + kappa * y * y),
            Objective::Rosenbrock => (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2),
        }
    }

    fn gradient(self, (x, y): Point) -> [f64; 2] {
        match self {
            Objective::Quadratic { kappa } => [x, kappa * y],
            Objective::Rosenbrock => {
                let across = y - x * x;
                [-2.0 * (1.0 - x) - 400.0 * x * across, 200.0 * across]
            }
        }
    }
}

/// One problem: an objective, where the runs start, how long they run, and how it is drawn.
struct Problem {
    name: &'static str,
    title: String,
    objective: Objective,
    start: Point,
    minimum: Point,
    steps: u64,
    threshold: f64,
    /// The largest learning rate of the sweep; the others are a factor `2^(1/4)` apart below it.
    lr_max: f64,
    /// The window drawn: `(x_min, x_max)` and `(y_min, y_max)`.
    x_range: (f64, f64),
    y_range: (f64, f64),
    /// The contour levels.
    levels: Vec<f64>,
}

fn problems() -> [Problem; 2] {
    let quadratic = Objective::Quadratic { kappa: KAPPA };
    [
        Problem {
            name: "quadratic",
            title: format!("quadratic f = (x\u{b2} + {KAPPA} y\u{b2}) / 2"),
            objective: quadratic,
            start: (-9.0, 1.5),
            minimum: (0.0, 0.0),
            steps: 300,
            threshold: 1e-4,
            lr_max: 0.125,
            x_range: (-10.0, 3.0),
            y_range: (-2.0, 2.0),
            levels: geometric(0.02, 2.0, 14),
        },
        Problem {
            name: "Rosenbrock",
            title: "Rosenbrock f = (1 \u{2212} x)\u{b2} + 100 (y \u{2212} x\u{b2})\u{b2}"
                .to_owned(),
            objective: Objective::Rosenbrock,
            start: (-1.2, 1.0),
            minimum: (1.0, 1.0),
            steps: 10_000,
            threshold: 1e-4,
            lr_max: 0.003,
            x_range: (-1.5, 1.5),
            y_range: (-0.6, 1.6),
            levels: geometric(0.01, 10f64.cbrt(), 16),
        },
    ]
}

/// `count` values `first * ratio^k`.
fn geometric(first: f64, ratio: f64, count: i32) -> Vec<f64> {
    (0..count).map(|k| first * ratio.powi(k)).collect()
}

/// The methods compared.
#[derive(Clone, Copy, PartialEq)]
enum Method {
    GradientDescent,
    HeavyBall,
    Nesterov,
    /// Heavy ball with momentum [`MATCHED_MOMENTUM`] and the learning rate of the tuned
    /// gradient descent times `1 - momentum`: the same step along a flat valley.
    MatchedHeavyBall,
}

impl Method {
    /// The methods whose settings are swept.
    const SWEPT: [Method; 3] = [Method::GradientDescent, Method::HeavyBall, Method::Nesterov];

    fn name(self) -> &'static str {
        match self {
            Method::GradientDescent => "gradient descent",
            Method::HeavyBall => "heavy ball",
            Method::Nesterov => "Nesterov",
            Method::MatchedHeavyBall => "heavy ball, GD step",
        }
    }

    /// The momentum coefficients of the sweep.
    fn momenta(self) -> &'static [f64] {
        match self {
            Method::GradientDescent => &[0.0],
            Method::HeavyBall | Method::Nesterov => &MOMENTA,
            Method::MatchedHeavyBall => &[MATCHED_MOMENTUM],
        }
    }

    fn color(self) -> &'static str {
        match self {
            Method::GradientDescent => "#d62728",
            Method::HeavyBall => "#1f62b4",
            Method::Nesterov => "#1a9a3a",
            Method::MatchedHeavyBall => "#8e3fb0",
        }
    }
}

/// The optimizer of one run, configured once.
enum Stepper {
    GradientDescent(Sgd),
    Momentum(Momentum),
}

impl Stepper {
    fn new(method: Method, lr: f64, momentum: f64) -> Result<Stepper, optkern::Error> {
        Ok(match method {
            Method::GradientDescent => Stepper::GradientDescent(Sgd::new(lr)?),
            Method::HeavyBall | Method::MatchedHeavyBall => {
                Stepper::Momentum(Momentum::heavy_ball(lr, momentum).build()?)
            }
            Method::Nesterov => {
                Stepper::Momentum(Momentum::heavy_ball(lr, momentum).nesterov(true).build()?)
            }
        })
    }
}

/// What one run did.
struct Run {
    method: Method,
    lr: f64,
    momentum: f64,
    /// The weights after each step, the start first.
    path: Vec<Point>,
    /// The first step after which `f` is below the problem's threshold.
    steps_to_threshold: Option<u64>,
    /// Whether the run was stopped because `f` blew up.
    diverged: bool,
}

impl Run {
    fn last(&self) -> Point {
        self.path[self.path.len() - 1]
    }

    /// The final value of `f`, infinite for a run that diverged (so it ranks last).
    fn final_value(&self, problem: &Problem) -> f64 {
        if self.diverged {
            f64::INFINITY
        } else {
            problem.objective.value(self.last())
        }
    }
}

/// Runs `method` with learning rate `lr` on `problem` for `problem.steps` steps, or until `f`
/// blows up.
fn run(
    exec: &Executor,
    problem: &Problem,
    method: Method,
    lr: f64,
    momentum: f64,
) -> Result<Run, Box<dyn Error>> {
    let stepper = Stepper::new(method, lr, momentum)?;
    let mut weights = [problem.start.0 as f32, problem.start.1 as f32];
    let mut velocity = [0.0f32; 2];
    let mut path = vec![problem.start];
    let mut steps_to_threshold = None;
    let mut diverged = false;
    let blow_up = 1e6 * problem.objective.value(problem.start);
    for step in 1..=problem.steps {
        let here = (f64::from(weights[0]), f64::from(weights[1]));
        let gradient = problem.objective.gradient(here).map(|g| g as f32);
        match &stepper {
            Stepper::GradientDescent(sgd) => exec.sgd_step(&mut weights, &gradient, sgd, step)?,
            Stepper::Momentum(momentum) => {
                exec.momentum_step(&mut weights, &mut velocity, &gradient, momentum, step)?
            }
        }
        let point = (f64::from(weights[0]), f64::from(weights[1]));
        let value = problem.objective.value(point);
        if !value.is_finite() || value > blow_up {
            diverged = true;
            break;
        }
        path.push(point);
        if steps_to_threshold.is_none() && value < problem.threshold {
            steps_to_threshold = Some(step);
        }
    }
    Ok(Run {
        method,
        lr,
        momentum,
        path,
        steps_to_threshold,
        diverged,
    })
}

/// The learning rates of a sweep: `lr_max * 2^(-k/4)` for `k = 0..12`, or every other one of
/// them when `quick`.
fn learning_rates(lr_max: f64, quick: bool) -> Vec<f64> {
    let stride = if quick { 2 } else { 1 };
    (0..12)
        .step_by(stride)
        .map(|k| lr_max * 2f64.powf(-f64::from(k) / 4.0))
        .collect()
}

/// Sweeps the learning rate of `method` and returns the best run (fewest steps to the
/// threshold, then lowest final `f`) with one line summarizing the sweep.
fn sweep(
    exec: &Executor,
    problem: &Problem,
    method: Method,
    quick: bool,
) -> Result<(Run, String), Box<dyn Error>> {
    let mut best: Option<Run> = None;
    let mut summary = String::new();
    for &momentum in method.momenta() {
        write!(summary, "  {:<17} {momentum:>4}", method.name())?;
        for lr in learning_rates(problem.lr_max, quick) {
            let candidate = run(exec, problem, method, lr, momentum)?;
            let outcome = match (candidate.diverged, candidate.steps_to_threshold) {
                (true, _) => "div".to_owned(),
                (false, Some(steps)) => steps.to_string(),
                (false, None) => "-".to_owned(),
            };
            write!(summary, " {outcome:>8}")?;
            let better = match &best {
                None => true,
                Some(best) => {
                    let key = |r: &Run| {
                        (
                            r.steps_to_threshold.unwrap_or(u64::MAX),
                            r.final_value(problem),
                        )
                    };
                    let (new, old) = (key(&candidate), key(best));
                    new.0 < old.0 || (new.0 == old.0 && new.1 < old.1)
                }
            };
            if better {
                best = Some(candidate);
            }
        }
        writeln!(summary)?;
    }
    let best = best.ok_or("empty learning-rate sweep")?;
    Ok((best, summary))
}

/// A number with three significant digits, without trailing zeros.
fn short(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return value.to_string();
    }
    let digits = (2 - value.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

fn distance(a: Point, b: Point) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

// ---------------------------------------------------------------------------------------------
// Contours: marching squares on a grid over the window, segments joined into polylines.

/// Where a contour crosses the grid: the edge from node `(i, j)` to `(i + 1, j)`
/// (`along_x`) or to `(i, j + 1)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct EdgeKey {
    i: usize,
    j: usize,
    along_x: bool,
}

/// The contour lines of `objective` at `level` over a `cells x cells` grid covering the
/// window, as polylines in problem coordinates.
fn contour_lines(problem: &Problem, level: f64, cells: usize) -> Vec<Vec<Point>> {
    let (x0, x1) = problem.x_range;
    let (y0, y1) = problem.y_range;
    let node = |i: usize, j: usize| -> Point {
        (
            x0 + (x1 - x0) * i as f64 / cells as f64,
            y0 + (y1 - y0) * j as f64 / cells as f64,
        )
    };
    let values: Vec<f64> = (0..=cells)
        .flat_map(|j| (0..=cells).map(move |i| (i, j)))
        .map(|(i, j)| problem.objective.value(node(i, j)))
        .collect();
    let value = |i: usize, j: usize| values[j * (cells + 1) + i];

    // The crossing point on an edge, by linear interpolation.
    let crossing = |edge: EdgeKey| -> Point {
        let (i2, j2) = if edge.along_x {
            (edge.i + 1, edge.j)
        } else {
            (edge.i, edge.j + 1)
        };
        let (a, b) = (value(edge.i, edge.j), value(i2, j2));
        let t = ((level - a) / (b - a)).clamp(0.0, 1.0);
        let (p, q) = (node(edge.i, edge.j), node(i2, j2));
        (p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1))
    };

    let mut segments: Vec<[EdgeKey; 2]> = Vec::new();
    for j in 0..cells {
        for i in 0..cells {
            // Corners counter-clockwise from the lower left; bit set where the value is above.
            let corners = [
                value(i, j),
                value(i + 1, j),
                value(i + 1, j + 1),
                value(i, j + 1),
            ];
            let case = corners
                .iter()
                .enumerate()
                .fold(0, |acc, (k, &v)| acc | (usize::from(v > level) << k));
            let bottom = EdgeKey {
                i,
                j,
                along_x: true,
            };
            let right = EdgeKey {
                i: i + 1,
                j,
                along_x: false,
            };
            let top = EdgeKey {
                i,
                j: j + 1,
                along_x: true,
            };
            let left = EdgeKey {
                i,
                j,
                along_x: false,
            };
            let center_above = corners.iter().sum::<f64>() / 4.0 > level;
            match case {
                0 | 15 => {}
                1 | 14 => segments.push([left, bottom]),
                2 | 13 => segments.push([bottom, right]),
                3 | 12 => segments.push([left, right]),
                4 | 11 => segments.push([right, top]),
                6 | 9 => segments.push([bottom, top]),
                7 | 8 => segments.push([left, top]),
                // Saddles: the center decides which corners connect.
                5 => {
                    if center_above {
                        segments.push([left, top]);
                        segments.push([bottom, right]);
                    } else {
                        segments.push([left, bottom]);
                        segments.push([right, top]);
                    }
                }
                10 => {
                    if center_above {
                        segments.push([left, bottom]);
                        segments.push([right, top]);
                    } else {
                        segments.push([left, top]);
                        segments.push([bottom, right]);
                    }
                }
                _ => unreachable!("four corners give sixteen cases"),
            }
        }
    }

    // Join the segments that share an edge crossing into polylines.
    let mut at_edge: HashMap<EdgeKey, Vec<usize>> = HashMap::new();
    for (index, segment) in segments.iter().enumerate() {
        for edge in segment {
            at_edge.entry(*edge).or_default().push(index);
        }
    }
    let mut used = vec![false; segments.len()];
    let mut lines = Vec::new();
    for first in 0..segments.len() {
        if used[first] {
            continue;
        }
        used[first] = true;
        let mut chain = vec![segments[first][0], segments[first][1]];
        for _direction in 0..2 {
            while let Some(&end) = chain.last() {
                let next = at_edge[&end].iter().copied().find(|&s| !used[s]);
                let Some(next) = next else { break };
                used[next] = true;
                let [a, b] = segments[next];
                chain.push(if a == end { b } else { a });
            }
            chain.reverse();
        }
        lines.push(chain.into_iter().map(crossing).collect());
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// The SVG.

const WIDTH: f64 = 1240.0;
const HEIGHT: f64 = 670.0;
const PANEL_WIDTH: f64 = 490.0;
const PANEL_HEIGHT: f64 = 400.0;
const PANEL_TOP: f64 = 78.0;
const PANEL_LEFTS: [f64; 2] = [75.0, 695.0];

/// Maps problem coordinates to pixels inside one panel.
struct Frame {
    left: f64,
    top: f64,
    x_range: (f64, f64),
    y_range: (f64, f64),
}

impl Frame {
    fn px(&self, (x, y): Point) -> Point {
        (
            self.left + (x - self.x_range.0) / (self.x_range.1 - self.x_range.0) * PANEL_WIDTH,
            self.top + (self.y_range.1 - y) / (self.y_range.1 - self.y_range.0) * PANEL_HEIGHT,
        )
    }
}

/// The part of the segment from `a` to `b` inside the window, as the parameters `(t0, t1)`
/// of its ends along the segment (Liang-Barsky), or `None` if it misses the window.
fn clip_segment(
    a: Point,
    b: Point,
    x_range: (f64, f64),
    y_range: (f64, f64),
) -> Option<(f64, f64)> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let mut t0: f64 = 0.0;
    let mut t1: f64 = 1.0;
    for (p, q) in [
        (-dx, a.0 - x_range.0),
        (dx, x_range.1 - a.0),
        (-dy, a.1 - y_range.0),
        (dy, y_range.1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    (t0 <= t1).then_some((t0, t1))
}

/// The pieces of the path inside the problem's window (the renderers differ in how they
/// clip, so the example clips the paths itself).
fn visible_pieces(problem: &Problem, path: &[Point]) -> Vec<Vec<Point>> {
    let at = |a: Point, b: Point, t: f64| (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
    let mut pieces = Vec::new();
    let mut piece: Vec<Point> = Vec::new();
    for pair in path.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        match clip_segment(a, b, problem.x_range, problem.y_range) {
            None => {
                if piece.len() > 1 {
                    pieces.push(std::mem::take(&mut piece));
                }
                piece.clear();
            }
            Some((t0, t1)) => {
                if t0 > 0.0 || piece.is_empty() {
                    if piece.len() > 1 {
                        pieces.push(std::mem::take(&mut piece));
                    }
                    piece = vec![at(a, b, t0)];
                }
                piece.push(at(a, b, t1));
                if t1 < 1.0 {
                    pieces.push(std::mem::take(&mut piece));
                }
            }
        }
    }
    if piece.len() > 1 {
        pieces.push(piece);
    }
    pieces
}

fn inside(problem: &Problem, (x, y): Point) -> bool {
    (problem.x_range.0..=problem.x_range.1).contains(&x)
        && (problem.y_range.0..=problem.y_range.1).contains(&y)
}

/// "x,y x,y ..." of the points in pixels, dropping points closer than `min_gap` pixels to the
/// previous one kept (the last point is always kept).
fn polyline_points(
    frame: &Frame,
    points: &[Point],
    min_gap: f64,
) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    let mut last: Option<Point> = None;
    for (index, &point) in points.iter().enumerate() {
        let p = frame.px(point);
        let is_last = index + 1 == points.len();
        if let Some(previous) = last
            && distance(previous, p) < min_gap
            && !is_last
        {
            continue;
        }
        if last.is_some() {
            text.push(' ');
        }
        write!(text, "{:.1},{:.1}", p.0, p.1)?;
        last = Some(p);
    }
    Ok(text)
}

/// A marker of `method` centred at pixel `(x, y)`: a circle, square, diamond or triangle.
fn marker(svg: &mut String, method: Method, (x, y): Point, size: f64) -> std::fmt::Result {
    let color = method.color();
    let h = size * 0.5;
    match method {
        Method::GradientDescent => write!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{:.1}" fill="{color}"/>"#,
            size * 0.55
        ),
        Method::HeavyBall => write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{size:.1}" height="{size:.1}" fill="{color}"/>"#,
            x - h,
            y - h
        ),
        Method::Nesterov => write!(
            svg,
            r#"<path d="M{:.1} {y:.1}L{x:.1} {:.1}L{:.1} {y:.1}L{x:.1} {:.1}Z" fill="{color}"/>"#,
            x - 1.4 * h,
            y - 1.4 * h,
            x + 1.4 * h,
            y + 1.4 * h
        ),
        Method::MatchedHeavyBall => write!(
            svg,
            r#"<path d="M{x:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z" fill="{color}"/>"#,
            y - 1.3 * h,
            x + 1.2 * h,
            y + 0.8 * h,
            x - 1.2 * h,
            y + 0.8 * h
        ),
    }
}

/// Round tick values for `range`: multiples of 1, 2 or 5 times a power of ten, about six.
fn ticks((low, high): (f64, f64)) -> Vec<f64> {
    let raw = (high - low) / 6.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power);
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// The legend text of one run.
fn legend_text(problem: &Problem, run: &Run) -> String {
    let momentum = if run.method == Method::GradientDescent {
        String::new()
    } else {
        format!(", momentum {}", run.momentum)
    };
    let reached = match run.steps_to_threshold {
        Some(steps) => format!("f &lt; {:e} after {steps} steps", problem.threshold),
        None => format!(
            "f \u{2265} {:e} after {} steps",
            problem.threshold, problem.steps
        ),
    };
    format!(
        "{}: lr {}{momentum}; {reached}",
        run.method.name(),
        short(run.lr)
    )
}

/// Draws one panel: contours, the paths of `runs`, the start and the minimum, axes and the
/// legend. `runs` starts with gradient descent.
fn panel(
    svg: &mut String,
    index: usize,
    problem: &Problem,
    runs: &[Run],
    grid_cells: usize,
) -> std::fmt::Result {
    let frame = Frame {
        left: PANEL_LEFTS[index],
        top: PANEL_TOP,
        x_range: problem.x_range,
        y_range: problem.y_range,
    };
    let (left, top) = (frame.left, frame.top);
    let (right, bottom) = (left + PANEL_WIDTH, top + PANEL_HEIGHT);
    let center = left + PANEL_WIDTH / 2.0;

    writeln!(
        svg,
        r#"<text x="{center:.1}" y="{:.1}" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        top - 12.0,
        problem.title
    )?;
    writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="#fcfcfc"/>"##
    )?;

    // Grid lines and tick labels.
    for x in ticks(problem.x_range) {
        let (px, _) = frame.px((x, 0.0));
        writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{bottom}" stroke="#ececec"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 16.0,
            short(x)
        )?;
    }
    for y in ticks(problem.y_range) {
        let (_, py) = frame.px((0.0, y));
        writeln!(
            svg,
            r##"<line x1="{left}" y1="{py:.1}" x2="{right}" y2="{py:.1}" stroke="#ececec"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 6.0,
            py + 4.0,
            short(y)
        )?;
    }
    writeln!(
        svg,
        r#"<text x="{center:.1}" y="{:.1}" text-anchor="middle" font-size="14" font-style="italic">x</text>"#,
        bottom + 36.0
    )?;
    writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="14" font-style="italic">y</text>"#,
        left - 42.0,
        top + PANEL_HEIGHT / 2.0 + 5.0
    )?;

    // Contours (the grid covers the window exactly), darker for lower levels.
    let count = problem.levels.len().max(2) as f64;
    for (k, &level) in problem.levels.iter().enumerate() {
        let gray = (110.0 + 100.0 * k as f64 / (count - 1.0)).round() as u8;
        for line in contour_lines(problem, level, grid_cells) {
            writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="rgb({gray},{gray},{gray})" stroke-width="0.8"/>"#,
                polyline_points(&frame, &line, 1.5)?
            )?;
        }
    }

    // Paths: a line through every step (points under half a pixel apart merged), and a
    // marker wherever the path has moved at least 5 pixels since the last marker.
    // Drawn from the last run to the first, so gradient descent is on top.
    for run in runs.iter().rev() {
        let dash = if run.method == Method::MatchedHeavyBall {
            r#" stroke-dasharray="6,3""#
        } else {
            ""
        };
        for piece in visible_pieces(problem, &run.path) {
            writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.4" stroke-opacity="0.9"{dash}/>"#,
                polyline_points(&frame, &piece, 0.5)?,
                run.method.color()
            )?;
        }
        let mut last_marker: Option<Point> = None;
        for &point in run.path.iter().filter(|&&point| inside(problem, point)) {
            let p = frame.px(point);
            if last_marker.is_some_and(|m| distance(m, p) < 5.0) {
                continue;
            }
            marker(svg, run.method, p, 4.0)?;
            last_marker = Some(p);
        }
        writeln!(svg)?;
    }

    // The start and the minimum.
    let (sx, sy) = frame.px(problem.start);
    writeln!(
        svg,
        r#"<circle cx="{sx:.1}" cy="{sy:.1}" r="6" fill="none" stroke="black" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">start</text>"#,
        sx,
        sy - 11.0
    )?;
    let (mx, my) = frame.px(problem.minimum);
    writeln!(
        svg,
        r#"<path d="M{:.1} {:.1}L{:.1} {:.1}M{:.1} {:.1}L{:.1} {:.1}" stroke="black" stroke-width="2.5"/><text x="{:.1}" y="{:.1}" font-size="12">minimum</text>"#,
        mx - 7.0,
        my - 7.0,
        mx + 7.0,
        my + 7.0,
        mx - 7.0,
        my + 7.0,
        mx + 7.0,
        my - 7.0,
        mx + 9.0,
        my + 18.0
    )?;
    writeln!(
        svg,
        r#"<rect x="{left}" y="{top}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="black"/>"#
    )?;

    // Legend under the panel: one line per run with its settings.
    for (row, run) in runs.iter().enumerate() {
        let y = bottom + 62.0 + 20.0 * row as f64;
        let x = left;
        let dash = if run.method == Method::MatchedHeavyBall {
            r#" stroke-dasharray="6,3""#
        } else {
            ""
        };
        write!(
            svg,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{dash}/>"#,
            x + 30.0,
            run.method.color()
        )?;
        marker(svg, run.method, (x + 15.0, y), 6.0)?;
        writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12.5">{}</text>"#,
            x + 38.0,
            y + 4.5,
            legend_text(problem, run)
        )?;
    }
    Ok(())
}

fn svg(
    problems: &[Problem],
    runs: &[Vec<Run>],
    grid_cells: usize,
) -> Result<String, std::fmt::Error> {
    let mut svg = String::new();
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        svg,
        r#"<text x="{:.1}" y="30" text-anchor="middle" font-size="19" font-weight="bold">{TITLE}</text>"#,
        WIDTH / 2.0
    )?;
    for (index, (problem, runs)) in problems.iter().zip(runs).enumerate() {
        panel(&mut svg, index, problem, runs, grid_cells)?;
    }
    let caption = [
        "Solid: each method with the learning rate (and momentum) of its sweep that gets f below \
         the threshold in the fewest steps."
            .to_owned(),
        format!(
            "Dashed: heavy ball with momentum {MATCHED_MOMENTUM} and lr = gradient descent's \
             \u{d7} (1 \u{2212} {MATCHED_MOMENTUM}), the same step along the valley as gradient \
             descent; not tuned."
        ),
    ];
    for (row, line) in caption.iter().enumerate() {
        writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">{line}</text>"#,
            WIDTH / 2.0,
            HEIGHT - 34.0 + 18.0 * row as f64
        )?;
    }
    writeln!(svg, "</svg>")?;
    Ok(svg)
}

/// One line of the table.
fn table_row(table: &mut String, problem: &Problem, run: &Run) -> std::fmt::Result {
    writeln!(
        table,
        "{:<11} {:<19} {:>8} {:>8} {:>6} {:>10.3e} {:>11.3e} {:>13}",
        problem.name,
        run.method.name(),
        short(run.lr),
        run.momentum,
        run.path.len() - 1,
        run.final_value(problem),
        distance(run.last(), problem.minimum),
        run.steps_to_threshold
            .map_or_else(|| "-".to_owned(), |steps| steps.to_string())
    )
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = match options() {
        Ok(options) => options,
        Err(code) => std::process::exit(code),
    };
    let exec = Executor::new()?.with_threads(Threads::Sequential);
    let problems = problems();

    println!(
        "optkern valley: plain gradient descent vs momentum on 2-D problems \
         ({} backend, f32 weights, one kernel call per step)",
        exec.backend().name()
    );
    println!(
        "settings: for each method and momentum, {} learning rates a factor 2^({}) apart; the \
         best is the one that first gets f below the threshold (then: lowest final f)",
        learning_rates(1.0, options.quick).len(),
        if options.quick { "1/2" } else { "1/4" },
    );
    println!(
        "gradient descent is stable on the quadratic only for lr < 2/kappa = {}, and at the \
         Rosenbrock minimum only for lr < 2/{:.1} = {} (2 over the largest curvature)",
        short(2.0 / KAPPA),
        ROSENBROCK_MAX_CURVATURE,
        short(2.0 / ROSENBROCK_MAX_CURVATURE)
    );

    let mut all_runs = Vec::new();
    let mut table = String::new();
    writeln!(
        table,
        "{:<11} {:<19} {:>8} {:>8} {:>6} {:>10} {:>11} {:>13}",
        "problem", "method", "lr", "momentum", "steps", "final f", "to minimum", "to threshold"
    )?;
    for problem in &problems {
        println!();
        println!(
            "{}: start ({}, {}), {} steps, threshold f < {:e}; steps to the threshold by lr \
             (div: diverged, -: never):",
            problem.name, problem.start.0, problem.start.1, problem.steps, problem.threshold
        );
        let mut header = format!("  {:<17} {:>4}", "method", "mom.");
        for lr in learning_rates(problem.lr_max, options.quick) {
            write!(header, " {:>8}", short(lr))?;
        }
        println!("{header}");
        let mut runs = Vec::new();
        for method in Method::SWEPT {
            let (best, summary) = sweep(&exec, problem, method, options.quick)?;
            print!("{summary}");
            table_row(&mut table, problem, &best)?;
            runs.push(best);
        }
        // Heavy ball with gradient descent's step along the valley, for the picture.
        let matched_lr = runs[0].lr * (1.0 - MATCHED_MOMENTUM);
        let matched = run(
            &exec,
            problem,
            Method::MatchedHeavyBall,
            matched_lr,
            MATCHED_MOMENTUM,
        )?;
        table_row(&mut table, problem, &matched)?;
        runs.push(matched);
        all_runs.push(runs);
    }
    println!();
    print!("{table}");
    println!(
        "heavy ball, GD step: not tuned; momentum {MATCHED_MOMENTUM} and lr = gradient \
         descent's x (1 - {MATCHED_MOMENTUM}),"
    );
    println!(
        "  so lr / (1 - momentum), its step along a valley of constant slope, is gradient \
         descent's"
    );

    let grid_cells = if options.quick { 120 } else { 400 };
    let picture = svg(&problems, &all_runs, grid_cells)?;
    if let Some(parent) = options.plot.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&options.plot, &picture)?;
    println!();
    println!(
        "wrote {} ({} KB)",
        options.plot.display(),
        picture.len().div_ceil(1024)
    );
    Ok(())
}

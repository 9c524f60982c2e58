//! End-to-end tests of [`super::Network`]: hand-built networks compared with an
//! independent dense reference written here (gather convolutions on i64, explicit
//! previous-step node copies), plus validation and layout checks.

use super::*;
use crate::lif::Reset;
use crate::weights::pack_i4;

/// Deterministic pseudo-random numbers for test weights.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u32) as i32
    }
}

struct ConvP {
    cin: usize,
    cout: usize,
    k: usize,
    w8: Vec<i8>,
    w4: Option<Vec<u8>>,
    bn: BnP,
}

struct BnP {
    mult: Vec<i32>,
    bias: Vec<i32>,
    shift: u8,
}

struct LinP {
    inputs: usize,
    outputs: usize,
    w8: Vec<i8>,
    w4: Option<Vec<u8>>,
    bn: BnP,
}

enum OpP {
    Zero,
    Skip,
    Pool,
    Conv(ConvP, Lif),
}

struct StageP {
    red: Option<(BnP, Lif, ConvP)>,
    edges: Vec<(u8, u8, OpP)>,
}

struct Spec {
    c: usize,
    h: usize,
    w: usize,
    pool: usize,
    t: usize,
    stem: ConvP,
    stages: Vec<StageP>,
    head_bn: BnP,
    head_lif: Lif,
    hidden: Option<(LinP, Lif)>,
    out: LinP,
    classes: usize,
    cluster: usize,
}

fn bn(r: &mut Lcg, n: usize, m: (i32, i32), b: (i32, i32), shift: u8) -> BnP {
    BnP {
        mult: (0..n).map(|_| r.range(m.0, m.1)).collect(),
        bias: (0..n).map(|_| r.range(b.0, b.1)).collect(),
        shift,
    }
}

fn weights(r: &mut Lcg, rows: usize, n: usize, int4: bool) -> (Vec<i8>, Option<Vec<u8>>) {
    let lim = if int4 { 7 } else { 127 };
    let w8: Vec<i8> = (0..rows * n).map(|_| r.range(-lim, lim) as i8).collect();
    let w4 = int4.then(|| {
        let mut p = vec![0u8; rows * n.div_ceil(2)];
        pack_i4(&w8, n, &mut p).unwrap();
        p
    });
    (w8, w4)
}

/// A conv whose requant keeps currents around the threshold: `mult / 2^shift ~ scale`.
fn conv(
    r: &mut Lcg,
    cin: usize,
    cout: usize,
    k: usize,
    int4: bool,
    m: (i32, i32),
    shift: u8,
) -> ConvP {
    let (w8, w4) = weights(r, cin * k * k, cout, int4);
    ConvP {
        cin,
        cout,
        k,
        w8,
        w4,
        bn: bn(r, cout, m, (-300, 2500), shift),
    }
}

fn lin(r: &mut Lcg, inputs: usize, outputs: usize, int4: bool, m: (i32, i32), shift: u8) -> LinP {
    let (w8, w4) = weights(r, inputs, outputs, int4);
    LinP {
        inputs,
        outputs,
        w8,
        w4,
        bn: bn(r, outputs, m, (-300, 300), shift),
    }
}

fn rq_of(b: &BnP) -> Requant<'_> {
    Requant {
        mult: &b.mult,
        bias: &b.bias,
        shift: b.shift,
    }
}

fn w_of<'a>(w8: &'a [i8], w4: &'a Option<Vec<u8>>) -> Weights<'a> {
    match w4 {
        Some(p) => Weights::I4(p),
        None => Weights::I8(w8),
    }
}

fn conv_of(c: &ConvP) -> ConvLayer<'_> {
    ConvLayer {
        cin: c.cin,
        cout: c.cout,
        k: c.k,
        weights: w_of(&c.w8, &c.w4),
        requant: rq_of(&c.bn),
    }
}

fn lin_of(l: &LinP) -> LinearLayer<'_> {
    LinearLayer {
        inputs: l.inputs,
        outputs: l.outputs,
        weights: w_of(&l.w8, &l.w4),
        requant: rq_of(&l.bn),
    }
}

fn edges_of(sp: &StageP) -> Vec<Edge<'_>> {
    sp.edges
        .iter()
        .map(|(from, to, op)| Edge {
            from: *from,
            to: *to,
            op: match op {
                OpP::Zero => Op::Zero,
                OpP::Skip => Op::Skip,
                OpP::Pool => Op::AvgPool3,
                OpP::Conv(c, lif) => Op::Conv {
                    lif: *lif,
                    conv: conv_of(c),
                },
            },
        })
        .collect()
}

fn stages_of<'a>(spec: &'a Spec, edges: &'a [Vec<Edge<'a>>]) -> Vec<Stage<'a>> {
    spec.stages
        .iter()
        .zip(edges)
        .map(|(sp, e)| Stage {
            reduction: sp.red.as_ref().map(|(b, lif, c)| Reduction {
                bn: rq_of(b),
                lif: *lif,
                conv: conv_of(c),
            }),
            cell: Cell { edges: e },
        })
        .collect()
}

fn network_of<'a>(spec: &'a Spec, stages: &'a [Stage<'a>]) -> Network<'a> {
    Network {
        channels: spec.c,
        height: spec.h,
        width: spec.w,
        input_pool: spec.pool,
        timesteps: spec.t,
        stem: conv_of(&spec.stem),
        stages,
        head: Head {
            bn: rq_of(&spec.head_bn),
            lif: spec.head_lif,
            hidden: spec.hidden.as_ref().map(|(l, lif)| Hidden {
                fc: lin_of(l),
                lif: *lif,
            }),
            output: lin_of(&spec.out),
        },
        classes: spec.classes,
        cluster: spec.cluster,
    }
}

// ---------------------------------------------------------------------------------------
// Independent dense reference (i64, gather convolutions, explicit previous-step nodes).

fn r_rq(acc: i64, b: &BnP, c: usize) -> i64 {
    let r = if b.shift == 0 {
        0
    } else {
        1i64 << (b.shift - 1)
    };
    (((acc * b.mult[c] as i64 + r) >> b.shift) + b.bias[c] as i64)
        .clamp(i32::MIN as i64, i32::MAX as i64)
}

fn r_sat(x: i64) -> i64 {
    x.clamp(i32::MIN as i64, i32::MAX as i64)
}

fn r_lif(lif: &Lif, v: &mut i16, i: i64) -> bool {
    let d = match lif.decay {
        Decay::Shift(n) => (*v as i64) >> n,
        Decay::Q15(m) => (*v as i64 * m as i64) >> 15,
    };
    let u = (d + i).clamp(-32768, 32767);
    if u >= lif.threshold as i64 {
        *v = match lif.reset {
            Reset::Hard => 0,
            Reset::Subtract => (u - lif.threshold as i64) as i16,
        };
        true
    } else {
        *v = u as i16;
        false
    }
}

/// Dense conv, CHW in and out; counts (co, out, tap) triples with a non-zero input.
fn r_conv(x: &[i64], c: &ConvP, h: usize, w: usize, ops: &mut u64) -> Vec<i64> {
    let pad = (c.k / 2) as isize;
    let mut out = vec![0i64; c.cout * h * w];
    for co in 0..c.cout {
        for oy in 0..h as isize {
            for ox in 0..w as isize {
                let mut s = 0;
                for ci in 0..c.cin {
                    for ky in 0..c.k as isize {
                        for kx in 0..c.k as isize {
                            let (y, xx) = (oy + ky - pad, ox + kx - pad);
                            if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                continue;
                            }
                            let v = x[(ci * h + y as usize) * w + xx as usize];
                            if v != 0 {
                                let wi =
                                    ((ci * c.k + ky as usize) * c.k + kx as usize) * c.cout + co;
                                s += v * c.w8[wi] as i64;
                                *ops += 1;
                            }
                        }
                    }
                }
                out[(co * h + oy as usize) * w + ox as usize] = s;
            }
        }
    }
    out
}

fn r_pool2(x: &[i64], c: usize, h: usize, w: usize) -> Vec<i64> {
    let (ph, pw) = (h / 2, w / 2);
    let mut out = vec![0; c * ph * pw];
    for ci in 0..c {
        for y in 0..ph {
            for xx in 0..pw {
                let b = (ci * h + 2 * y) * w + 2 * xx;
                out[(ci * ph + y) * pw + xx] = x[b] + x[b + 1] + x[b + w] + x[b + w + 1];
            }
        }
    }
    out
}

fn r_linear(x: &[i64], l: &LinP, ops: &mut u64) -> Vec<i64> {
    let mut out = vec![0; l.outputs];
    for (i, &v) in x.iter().enumerate() {
        if v != 0 {
            for (o, a) in out.iter_mut().enumerate() {
                *a += v * l.w8[i * l.outputs + o] as i64;
            }
            *ops += l.outputs as u64;
        }
    }
    out
}

struct RefResult {
    class: usize,
    spikes: u64,
    synops: u64,
    scores: Vec<i32>,
}

fn reference(spec: &Spec, image: &[u8]) -> RefResult {
    let p = spec.pool;
    let (h0, w0) = (spec.h / p, spec.w / p);
    let mut px = vec![0i64; spec.c * h0 * w0];
    for c in 0..spec.c {
        for y in 0..h0 {
            for x in 0..w0 {
                let mut s = 0i64;
                for dy in 0..p {
                    for dx in 0..p {
                        s += image[(c * spec.h + y * p + dy) * spec.w + x * p + dx] as i64;
                    }
                }
                px[(c * h0 + y) * w0 + x] = s / (p * p) as i64;
            }
        }
    }
    let mut synops = 0u64;
    let mut spikes = 0u64;
    let stem_acc = r_conv(&px, &spec.stem, h0, w0, &mut synops);
    let plane0 = h0 * w0;
    let stem: Vec<i64> = stem_acc
        .iter()
        .enumerate()
        .map(|(i, &a)| r_rq(a, &spec.stem.bn, i / plane0))
        .collect();

    // Geometry per stage.
    let mut geo = vec![];
    let (mut c, mut h, mut w) = (spec.stem.cout, h0, w0);
    for st in &spec.stages {
        if let Some((_, _, cv)) = &st.red {
            (c, h, w) = (cv.cout, h / 2, w / 2);
        }
        geo.push((c, h, w));
    }
    let mut mem_red: Vec<Vec<i16>> = vec![vec![]; spec.stages.len()];
    let mut mem_edge: Vec<Vec<Vec<i16>>> = spec
        .stages
        .iter()
        .map(|s| vec![vec![]; s.edges.len()])
        .collect();
    let mut prev: Vec<[Vec<i64>; 4]> = geo
        .iter()
        .map(|&(c, h, w)| core::array::from_fn(|_| vec![0; c * h * w]))
        .collect();
    let (lc, lh, lw) = *geo.last().unwrap();
    let mut mem_head = vec![0i16; lc * lh * lw];
    let mut mem_hidden = vec![0i16; spec.hidden.as_ref().map_or(0, |(l, _)| l.outputs)];
    let mut scores = vec![0i64; spec.classes];

    for _t in 0..spec.t {
        let mut x_in = stem.clone();
        let mut g_in = (spec.stem.cout, h0, w0);
        for (s, st) in spec.stages.iter().enumerate() {
            let (c, h, w) = geo[s];
            let x0 = match &st.red {
                None => x_in.clone(),
                Some((b, lif, cv)) => {
                    let (pc, ph, pw) = g_in;
                    let m = &mut mem_red[s];
                    if m.is_empty() {
                        *m = vec![0; pc * ph * pw];
                    }
                    let sp: Vec<i64> = (0..pc * ph * pw)
                        .map(|i| r_lif(lif, &mut m[i], r_rq(x_in[i], b, i / (ph * pw))) as i64)
                        .collect();
                    spikes += sp.iter().sum::<i64>() as u64;
                    if std::env::var("REF_DEBUG").is_ok() {
                        eprintln!(
                            "  s{s} reduction: {} of {}",
                            sp.iter().sum::<i64>(),
                            sp.len()
                        );
                    }
                    // Only outputs that survive the floor pool are counted.
                    let mut ops_full = 0;
                    let full = r_conv(&sp, cv, ph, pw, &mut ops_full);
                    let mut ops_kept = 0u64;
                    {
                        // Count again: only taps landing in rows/cols < 2 * (h / 2) execute.
                        let pad = (cv.k / 2) as isize;
                        for _co in 0..cv.cout {
                            for oy in 0..(2 * h) as isize {
                                for ox in 0..(2 * w) as isize {
                                    for ci in 0..cv.cin {
                                        for ky in 0..cv.k as isize {
                                            for kx in 0..cv.k as isize {
                                                let (y, xx) = (oy + ky - pad, ox + kx - pad);
                                                if y >= 0
                                                    && xx >= 0
                                                    && y < ph as isize
                                                    && xx < pw as isize
                                                    && sp[(ci * ph + y as usize) * pw + xx as usize]
                                                        != 0
                                                {
                                                    ops_kept += 1;
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    synops += ops_kept;
                    let pooled = r_pool2(&full, cv.cout, ph, pw);
                    pooled
                        .iter()
                        .enumerate()
                        .map(|(i, &a)| r_rq(a, &cv.bn, i / (h * w)))
                        .collect()
                }
            };
            let mut nodes: [Vec<i64>; 4] = [
                x0,
                vec![0; c * h * w],
                vec![0; c * h * w],
                vec![0; c * h * w],
            ];
            for j in 1..=3u8 {
                for (ei, (from, to, op)) in st.edges.iter().enumerate() {
                    if *to != j {
                        continue;
                    }
                    let src = if *from < j {
                        nodes[*from as usize].clone()
                    } else {
                        prev[s][*from as usize].clone()
                    };
                    let contrib: Vec<i64> = match op {
                        OpP::Zero => vec![0; c * h * w],
                        OpP::Skip => src,
                        OpP::Pool => {
                            let mut out = vec![0; c * h * w];
                            for ci in 0..c {
                                for y in 0..h as isize {
                                    for x in 0..w as isize {
                                        let mut sum = 0i64;
                                        for dy in -1..=1 {
                                            for dx in -1..=1 {
                                                let (yy, xx) = (y + dy, x + dx);
                                                if yy >= 0
                                                    && xx >= 0
                                                    && yy < h as isize
                                                    && xx < w as isize
                                                {
                                                    sum += src
                                                        [(ci * h + yy as usize) * w + xx as usize];
                                                }
                                            }
                                        }
                                        out[(ci * h + y as usize) * w + x as usize] =
                                            r_sat(sum.div_euclid(9));
                                    }
                                }
                            }
                            out
                        }
                        OpP::Conv(cv, lif) => {
                            let m = &mut mem_edge[s][ei];
                            if m.is_empty() {
                                *m = vec![0; c * h * w];
                            }
                            let sp: Vec<i64> = (0..c * h * w)
                                .map(|i| r_lif(lif, &mut m[i], src[i]) as i64)
                                .collect();
                            spikes += sp.iter().sum::<i64>() as u64;
                            if std::env::var("REF_DEBUG").is_ok() {
                                eprintln!(
                                    "  s{s} edge {ei}: {} of {}",
                                    sp.iter().sum::<i64>(),
                                    sp.len()
                                );
                            }
                            let acc = r_conv(&sp, cv, h, w, &mut synops);
                            acc.iter()
                                .enumerate()
                                .map(|(i, &a)| r_rq(a, &cv.bn, i / (h * w)))
                                .collect()
                        }
                    };
                    for (d, v) in nodes[j as usize].iter_mut().zip(contrib) {
                        *d = r_sat(*d + v);
                    }
                }
            }
            x_in = nodes[3].clone();
            prev[s] = nodes;
            g_in = (c, h, w);
        }
        // Head.
        let plane = lh * lw;
        let sp: Vec<i64> = (0..lc * plane)
            .map(|i| {
                r_lif(
                    &spec.head_lif,
                    &mut mem_head[i],
                    r_rq(x_in[i], &spec.head_bn, i / plane),
                ) as i64
            })
            .collect();
        spikes += sp.iter().sum::<i64>() as u64;
        if std::env::var("REF_DEBUG").is_ok() {
            let xs: Vec<i64> = x_in.iter().step_by(7).copied().collect();
            eprintln!(
                "t{_t} head spikes {} of {}; x3 sample {:?}",
                sp.iter().sum::<i64>(),
                sp.len(),
                xs
            );
        }
        let counts = r_pool2(&sp, lc, lh, lw);
        let out = match &spec.hidden {
            Some((fc, lif)) => {
                let a = r_linear(&counts, fc, &mut synops);
                let hs: Vec<i64> = a
                    .iter()
                    .enumerate()
                    .map(|(o, &a)| r_lif(lif, &mut mem_hidden[o], r_rq(a, &fc.bn, o)) as i64)
                    .collect();
                spikes += hs.iter().sum::<i64>() as u64;
                if std::env::var("REF_DEBUG").is_ok() {
                    let cur: Vec<i64> = a
                        .iter()
                        .enumerate()
                        .map(|(o, &a)| r_rq(a, &fc.bn, o))
                        .collect();
                    eprintln!("  hidden {hs:?} counts {counts:?} cur {cur:?}");
                }
                r_linear(&hs, &spec.out, &mut synops)
            }
            None => r_linear(&counts, &spec.out, &mut synops),
        };
        for (k, score) in scores.iter_mut().enumerate() {
            for j in 0..spec.cluster {
                let o = k * spec.cluster + j;
                *score = r_sat(*score + r_rq(out[o], &spec.out.bn, o));
            }
        }
    }
    let mut class = 0;
    for (k, &s) in scores.iter().enumerate() {
        if s > scores[class] {
            class = k;
        }
    }
    RefResult {
        class,
        spikes,
        synops,
        scores: scores.iter().map(|&s| s as i32).collect(),
    }
}

// ---------------------------------------------------------------------------------------

/// Two stages, every op kind, backward edges (3->1, 2->1, 3->2), int4 and int8 layers,
/// a Q15/subtractive LIF, input pooling and a hidden layer.
fn tiny(seed: u64, pool: usize, h: usize, w: usize, hidden: bool) -> Spec {
    tiny_with(seed, pool, h, w, hidden, 3)
}

/// [`tiny`] with `c0` channels in stage 0 (`2 * c0` in stage 1).
fn tiny_with(seed: u64, pool: usize, h: usize, w: usize, hidden: bool, c0: usize) -> Spec {
    let r = &mut Lcg(seed);
    let odd = Lif {
        decay: Decay::Q15(9000),
        threshold: 3500,
        reset: Reset::Subtract,
    };
    let snn = Lif::SNASNET;
    let stage0 = StageP {
        red: None,
        edges: vec![
            (0, 1, OpP::Conv(conv(r, c0, c0, 3, false, (30, 90), 5), snn)),
            (0, 2, OpP::Skip),
            (
                1,
                2,
                OpP::Conv(conv(r, c0, c0, 1, true, (300, 900), 6), odd),
            ),
            (0, 3, OpP::Pool),
            (2, 3, OpP::Conv(conv(r, c0, c0, 3, false, (30, 90), 5), snn)),
            (1, 3, OpP::Zero),
            (
                3,
                1,
                OpP::Conv(conv(r, c0, c0, 3, true, (200, 500), 5), snn),
            ),
        ],
    };
    let c1 = 2 * c0;
    let stage1 = StageP {
        red: Some((
            bn(r, c0, (6000, 12000), (0, 1500), 12),
            snn,
            conv(r, c0, c1, 3, false, (150, 400), 7),
        )),
        edges: vec![
            (0, 1, OpP::Skip),
            (1, 2, OpP::Pool),
            (0, 2, OpP::Conv(conv(r, c1, c1, 3, false, (10, 40), 5), snn)),
            (2, 1, OpP::Skip),
            (
                3,
                2,
                OpP::Conv(conv(r, c1, c1, 1, false, (80, 200), 5), snn),
            ),
            (
                2,
                3,
                OpP::Conv(conv(r, c1, c1, 3, true, (100, 300), 5), snn),
            ),
            (0, 3, OpP::Skip),
        ],
    };
    let (h0, w0) = (h / pool, w / pool);
    let (h1, w1) = (h0 / 2, w0 / 2);
    let d = c1 * (h1 / 2) * (w1 / 2);
    let (classes, cluster) = (3, 2);
    let (hidden, out) = if hidden {
        let fc = 10;
        (
            Some((
                {
                    let mut l = lin(r, d, fc, true, (3000, 7000), 6);
                    l.bn.bias = (0..fc).map(|_| r.range(1000, 5000)).collect();
                    l
                },
                snn,
            )),
            lin(r, fc, classes * cluster, false, (200, 400), 4),
        )
    } else {
        (None, lin(r, d, classes * cluster, false, (200, 400), 4))
    };
    let mut stem = conv(r, 1, c0, 3, false, (60, 160), 8);
    stem.bn.bias = (0..c0).map(|_| r.range(1500, 3500)).collect();
    Spec {
        c: 1,
        h,
        w,
        pool,
        t: 4,
        stem,
        stages: vec![stage0, stage1],
        head_bn: bn(r, c1, (7000, 14000), (200, 1500), 12),
        head_lif: snn,
        hidden,
        out,
        classes,
        cluster,
    }
}

fn image(seed: u64, n: usize) -> Vec<u8> {
    let r = &mut Lcg(seed);
    (0..n)
        .map(|i| if i % 5 == 0 { 0 } else { r.range(0, 255) as u8 })
        .collect()
}

fn run(spec: &Spec, img: &[u8]) -> (WorkspaceLayout, usize, u64, u64, Vec<i32>) {
    let edges: Vec<Vec<Edge>> = spec.stages.iter().map(edges_of).collect();
    let stages = stages_of(spec, &edges);
    let net = network_of(spec, &stages);
    let l = net.workspace_layout().unwrap();
    let mut m = vec![0x5555i16; l.membranes_i16];
    let mut c = vec![-7i32; l.currents_i32];
    let mut s = vec![u32::MAX; l.spikes_u32];
    let mut x = vec![123i32; l.scratch_i32];
    let mut b = vec![9u8; l.bytes_u8];
    let mut ws = Workspace {
        membranes: &mut m,
        currents: &mut c,
        spikes: &mut s,
        scratch: &mut x,
        bytes: &mut b,
    };
    let r = net.infer(img, &mut ws).unwrap();
    let first = (r.class, r.spikes, r.synops, r.scores.to_vec());
    // A second run on the same (dirty) workspace gives the same answer: state is reset.
    let r2 = net.infer(img, &mut ws).unwrap();
    assert_eq!((r2.class, r2.spikes, r2.synops, r2.scores.to_vec()), first);
    // Packed i16 accumulators (where exact) and i32 ones give the same answer.
    // So do the carry lanes of ARMv6-M.
    for (packed, lanes) in [(false, false), (true, false), (true, true)] {
        let r3 = net.infer_with(img, &mut ws, packed, lanes).unwrap();
        let got = (r3.class, r3.spikes, r3.synops, r3.scores.to_vec());
        assert_eq!(got, first, "packed {packed} lanes {lanes}");
    }
    (l, first.0, first.1, first.2, first.3)
}

#[test]
fn tiny_networks_match_the_dense_reference() {
    let mut classes_seen = [false; 3];
    let mut total = 0;
    for (seed, pool, h, w, hidden) in [
        (1, 2, 16, 16, true),
        (2, 1, 9, 11, true),
        (3, 1, 8, 8, false),
        (4, 4, 32, 28, true),
        (5, 2, 15, 17, false),
    ] {
        let spec = tiny(seed, pool, h, w, hidden);
        let mut all_scores = vec![];
        for im in 0..4 {
            let img = image(seed * 100 + im, h * w);
            let (_, class, spikes, synops, scores) = run(&spec, &img);
            let r = reference(&spec, &img);
            assert_eq!(scores, r.scores, "seed {seed} image {im}");
            assert_eq!(
                (class, spikes, synops),
                (r.class, r.spikes, r.synops),
                "seed {seed} image {im}"
            );
            assert!(
                spikes > 0 && synops > 0,
                "seed {seed}: the test network must be active"
            );
            classes_seen[class] = true;
            if std::env::var("REF_DEBUG").is_ok() {
                eprintln!("seed {seed} image {im}: class {class} spikes {spikes} synops {synops} {scores:?}");
            }
            all_scores.push(scores);
            total += spikes;
        }
        all_scores.dedup();
        assert!(
            all_scores.len() > 1,
            "seed {seed}: scores must depend on the image"
        );
    }
    assert!(total > 100);
    assert!(
        classes_seen.iter().filter(|&&b| b).count() >= 2,
        "predictions should vary: {classes_seen:?}"
    );
}

/// Networks whose channel counts are multiples of 4 take the packed `i16` accumulators
/// where their weights allow it, and still match the reference.
#[test]
fn packed_accumulators_match_the_dense_reference() {
    // The same scales with 12 more bits of shift: the packed path needs shifts 17..=31.
    let widen = |c: &mut ConvP| {
        c.bn.mult.iter_mut().for_each(|m| *m <<= 12);
        c.bn.shift += 12;
    };
    for (seed, c0) in [(21, 4), (22, 8)] {
        let mut spec = tiny_with(seed, 2, 16, 16, true, c0);
        for st in &mut spec.stages {
            if let Some((_, _, c)) = &mut st.red {
                widen(c);
            }
            for (_, _, op) in &mut st.edges {
                if let OpP::Conv(c, _) = op {
                    widen(c);
                }
            }
        }
        let edges: Vec<Vec<Edge>> = spec.stages.iter().map(edges_of).collect();
        let stages = stages_of(&spec, &edges);
        let net = network_of(&spec, &stages);
        let mask = net.packed_layers();
        let convs: u32 = stages
            .iter()
            .map(|st| {
                let edges = st.cell.edges.iter();
                st.reduction.is_some() as u32
                    + edges.filter(|e| matches!(e.op, Op::Conv { .. })).count() as u32
            })
            .sum();
        // With c0 = 8 every layer takes packed lanes, the int4 ones (3->1 of stage 0, 2->3
        // of stage 1) included; with c0 = 4 the int4 layer of stage 0 cannot (4 lanes).
        if c0 == 8 {
            assert_eq!(mask.count_ones(), convs, "seed {seed}: mask {mask:b}");
        } else {
            assert!(mask.count_ones() >= 4, "seed {seed}: mask {mask:b}");
        }
        for im in 0..3 {
            let img = image(seed * 100 + im, 256);
            let (_, class, spikes, synops, scores) = run(&spec, &img);
            let r = reference(&spec, &img);
            assert_eq!(scores, r.scores, "seed {seed} image {im}");
            assert_eq!((class, spikes, synops), (r.class, r.spikes, r.synops));
            assert!(spikes > 0 && synops > 0, "seed {seed}: inactive");
        }
    }
}

/// Cells where several conv edges read the same node: the runtime computes one LIF for
/// consecutive edges with the same source, direction and neuron (their membranes are
/// equal forever) and must still match the reference, which runs every edge's own LIF;
/// the same source read in the other direction, or with another neuron, must not share.
#[test]
fn conv_edges_sharing_a_source_match_the_dense_reference() {
    let odd = Lif {
        decay: Decay::Q15(20000),
        threshold: 3000,
        reset: Reset::Subtract,
    };
    let snn = Lif::SNASNET;
    for seed in 11..14u64 {
        let mut spec = tiny(seed, 2, 16, 16, true);
        let r = &mut Lcg(seed * 7);
        let (c0, c1) = (3, 6);
        // Stage 0: 3->1 and 3->2 (backward, shared), 0->2 and 0->3 (forward, shared).
        spec.stages[0].edges = vec![
            (3, 1, OpP::Conv(conv(r, c0, c0, 3, false, (30, 90), 5), snn)),
            (
                3,
                2,
                OpP::Conv(conv(r, c0, c0, 1, true, (300, 900), 6), snn),
            ),
            (0, 2, OpP::Conv(conv(r, c0, c0, 3, false, (30, 90), 5), snn)),
            (
                0,
                3,
                OpP::Conv(conv(r, c0, c0, 1, false, (200, 500), 5), snn),
            ),
            (2, 3, OpP::Conv(conv(r, c0, c0, 3, false, (30, 90), 5), snn)),
        ];
        // Stage 1: 2->1 (backward) then 2->3 (forward) are adjacent conv edges from node 2
        // but read different steps; 0->3 after 0->... uses another neuron.
        spec.stages[1].edges = vec![
            (0, 1, OpP::Skip),
            (2, 1, OpP::Conv(conv(r, c1, c1, 3, false, (10, 40), 5), snn)),
            (0, 2, OpP::Pool),
            (2, 3, OpP::Conv(conv(r, c1, c1, 3, false, (10, 40), 5), snn)),
            (
                2,
                3,
                OpP::Conv(conv(r, c1, c1, 1, false, (80, 200), 5), odd),
            ),
            (
                0,
                3,
                OpP::Conv(conv(r, c1, c1, 1, false, (80, 200), 5), snn),
            ),
        ];
        for im in 0..3 {
            let img = image(seed * 100 + im, 256);
            let (_, class, spikes, synops, scores) = run(&spec, &img);
            let r = reference(&spec, &img);
            assert_eq!(scores, r.scores, "seed {seed} image {im}");
            assert_eq!(
                (class, spikes, synops),
                (r.class, r.spikes, r.synops),
                "seed {seed} image {im}"
            );
            assert!(
                spikes > 0 && synops > 0,
                "seed {seed}: inactive test network"
            );
        }
    }
}

#[test]
fn layout_is_exact_for_a_known_network() {
    // 1x16x16, pool 2 -> stage 0: 3x8x8 (n = 192), stage 1: 6x4x4 (n = 96), head 6x2x2.
    let spec = tiny(1, 2, 16, 16, true);
    let (l, ..) = run(&spec, &image(7, 256));
    // membranes: stage0 4 conv edges x 192, reduction 192, stage1 3 conv edges x 96,
    // head 96, hidden 10
    assert_eq!(l.membranes_i16, 4 * 192 + 192 + 3 * 96 + 96 + 10);
    // persistent nodes: stage 0 node 3 (3->1); stage 1 nodes 2 and 3 (2->1, 3->2)
    assert_eq!(l.persistent_nodes_i32, 192 + 2 * 96);
    assert_eq!(l.stem_current_i32, 192);
    assert_eq!(l.reduction_slot_i32, 96);
    assert_eq!(l.node_slot_i32, 192);
    assert_eq!(l.scores_i32, 3);
    assert_eq!(l.currents_i32, 192 + 384 + 96 + 3 * 192 + 3);
    assert_eq!(l.spikes_u32, 6);
    assert_eq!(l.scratch_i32, 192);
    assert_eq!(
        (l.pooled_input_u8, l.head_counts_u8, l.bytes_u8),
        (64, 24, 64)
    );
    assert_eq!(
        l.bytes(),
        l.membranes_i16 * 2 + l.currents_i32 * 4 + 6 * 4 + 192 * 4 + 64
    );
}

#[test]
fn all_zero_image_still_runs_on_biases() {
    let spec = tiny(3, 1, 8, 8, false);
    let img = vec![0u8; 64];
    let (_, class, spikes, synops, scores) = run(&spec, &img);
    let r = reference(&spec, &img);
    assert_eq!(
        (class, spikes, synops, scores),
        (r.class, r.spikes, r.synops, r.scores)
    );
}

#[test]
fn rejects_bad_descriptions_and_workspaces() {
    let spec = tiny(1, 2, 16, 16, true);
    let edges: Vec<Vec<Edge>> = spec.stages.iter().map(edges_of).collect();
    let stages = stages_of(&spec, &edges);
    let net = network_of(&spec, &stages);
    let l = net.workspace_layout().unwrap();

    let short = [0i8; 5];
    let mut bad = net;
    bad.stem.weights = Weights::I8(&short);
    assert_eq!(
        bad.validate(),
        Err(Error::Length {
            layer: Layer::Stem,
            field: "weights",
            expected: 27,
            found: 5
        })
    );
    let msg = format!("{}", bad.validate().unwrap_err());
    assert!(
        msg.contains("stem") && msg.contains("weights") && msg.contains("27"),
        "{msg}"
    );

    let mut bad = net;
    bad.input_pool = 3;
    assert!(matches!(
        bad.validate(),
        Err(Error::Value {
            field: "input_pool",
            ..
        })
    ));

    let mut bad = net;
    bad.cluster = 3;
    assert!(matches!(
        bad.validate(),
        Err(Error::Length {
            layer: Layer::Output,
            ..
        })
    ));

    let into_input = [Edge {
        from: 1,
        to: 0,
        op: Op::Skip,
    }];
    let mut st = stages.clone();
    st[0].cell = Cell { edges: &into_input };
    let mut bad = net;
    bad.stages = &st;
    assert!(matches!(
        bad.validate(),
        Err(Error::Value {
            layer: Layer::Edge { stage: 0, index: 0 },
            ..
        })
    ));

    let mut st = stages.clone();
    st[1].reduction = None;
    bad.stages = &st;
    assert!(matches!(
        bad.validate(),
        Err(Error::Value {
            layer: Layer::Reduction { stage: 1 },
            ..
        })
    ));

    let mut m = vec![0i16; l.membranes_i16 - 1];
    let mut c = vec![0i32; l.currents_i32];
    let mut s = vec![0u32; l.spikes_u32];
    let mut x = vec![0i32; l.scratch_i32];
    let mut b = vec![0u8; l.bytes_u8];
    let mut ws = Workspace {
        membranes: &mut m,
        currents: &mut c,
        spikes: &mut s,
        scratch: &mut x,
        bytes: &mut b,
    };
    assert_eq!(
        net.infer(&[0; 256], &mut ws).unwrap_err(),
        Error::Workspace {
            buffer: "membranes",
            needed: l.membranes_i16,
            found: l.membranes_i16 - 1
        }
    );
    let mut m = vec![0i16; l.membranes_i16];
    ws.membranes = &mut m;
    assert_eq!(
        net.infer(&[0; 255], &mut ws).unwrap_err(),
        Error::Image {
            expected: 256,
            found: 255
        }
    );
    assert!(net.infer(&[0; 256], &mut ws).is_ok());
}

//! Tests of the memory model: a hand-computed case byte for byte, weight widths,
//! placement and overflow on real profiles, and the cost per candidate.

use std::path::Path;

use super::*;
use crate::arch::Arch;
use crate::boards::{Catalog, Core, Fpu, Isa, Region, Reserves};

fn target(code_reserve_bytes: u64) -> Target {
    Target {
        name: "test-m4f".into(),
        description: "test".into(),
        triple: "thumbv7em-none-eabihf".into(),
        core: Core::CortexM4f,
        fpu: Fpu::Sp,
        isa: Isa::Armv7em,
        qemu_machine: None,
        code_reserve_bytes,
        latency: None,
    }
}

fn region(name: &str, kind: RegionKind, origin: u64, size: u64) -> Region {
    Region {
        name: name.into(),
        kind,
        origin,
        size,
    }
}

fn board(regions: Vec<Region>, stack_bytes: u64) -> Profile {
    Profile {
        name: "test-board".into(),
        description: "test".into(),
        target: "test-m4f".into(),
        probe_rs_chip: Some("TEST".into()),
        clock_hz: 1,
        runner: Runner::ProbeRs,
        regions,
        reserves: Reserves {
            stack_bytes,
            runtime_bytes: 0,
            region: None,
        },
        model_budget_bytes: None,
        source: None,
    }
}

fn catalog() -> Catalog {
    Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap()
}

fn arch(s: &str) -> Arch {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn hand_computed_small_network_byte_for_byte() {
    // One stage, a cell with a single conv3x3 on 0->3, C = 2, no hidden classifier,
    // on a 1x4x4 input with 2 classes; 8-bit weights; code reserve 1000 bytes.
    let a = arch("cell=0003.0000.0000.0000,ch=2,stages=1,fc=0,t=2,pool=1,cluster=1,bits=8");
    let input = InputShape {
        channels: 1,
        height: 4,
        width: 4,
        classes: 2,
    };
    let b = board(
        vec![
            region("flash", RegionKind::Flash, 0x0800_0000, 0x1_0000),
            region("dtcm", RegionKind::Dtcm, 0x2000_0000, 256),
            region("sram", RegionKind::Sram, 0x2001_0000, 4096),
        ],
        1024,
    );
    let e = estimate_for_target(&a, &input, &b, &target(1000));
    assert!(e.problem.is_none(), "{:?}", e.problem);
    let rows: Vec<(&str, [u64; 8])> = e
        .layers
        .iter()
        .map(|l| {
            let r = l;
            (
                r.name.as_str(),
                [
                    r.params,
                    r.weight_bytes,
                    r.const_bytes,
                    r.flash_bytes,
                    r.state_bytes,
                    r.spike_bytes,
                    r.activation_bytes,
                    r.scratch_bytes,
                ],
            )
        })
        .collect();
    // [params, weights, consts, flash, state, spikes, currents, scratch]
    let expected: Vec<(&str, [u64; 8])> = vec![
        // u8 image 1*4*4 = 16 bytes.
        ("input", [0, 0, 0, 0, 0, 0, 16, 0]),
        // conv 1->2: 2*9 weights + BN 2*2; weights 9 rows of 2 B = 18 -> 20 (aligned);
        // mult + bias 2*8 = 16; stem.out 2*4*4 i32 = 128; accumulator 128.
        ("stem", [22, 20, 16, 36, 0, 0, 128, 128]),
        // LIF on 2*4*4 = 32 neurons: i16 64 B, spikes 1 word = 4 B; conv 2->2: 36
        // weights + BN 4 = 40 params, 18 rows of 2 B = 36, constants 16.
        ("s0.e03.conv3x3", [40, 36, 16, 52, 64, 4, 0, 128]),
        // node 3: 2*4*4 i32 = 128 (node 0 is stem.out).
        ("s0.nodes", [0, 0, 0, 0, 0, 0, 128, 0]),
        // BN 2 channels (4 params, 16 B), LIF 32 neurons; avgpool2 -> 2*2*2 = 8 pooled
        // counts, u8 scratch 8.
        ("head", [4, 0, 16, 16, 64, 4, 0, 8]),
        // Linear 8->2: 16 weights + 2 biases; 8 rows of 2 B; constants 16; acc 2 i32.
        ("head.out", [18, 16, 16, 32, 0, 0, 8, 8]),
        // One edge (56), one stage (80), the network (196).
        ("descriptors", [0, 0, 0, 332, 0, 0, 0, 0]),
        ("code", [0, 0, 0, 1000, 0, 0, 0, 0]),
    ];
    assert_eq!(rows, expected);
    assert_eq!(e.flash_bytes, 36 + 52 + 16 + 32 + 332 + 1000);
    assert_eq!(e.params(), 84);

    let buffers: Vec<(&str, u64, &str)> = e
        .buffers
        .iter()
        .map(|b| (b.name.as_str(), b.bytes, b.region.as_str()))
        .collect();
    // The firmware's workspace: membranes 32 (edge) + 32 (head) i16; currents stem 32
    // + 3 node slots of 32 + 2 scores i32; one spike word; scratch the largest
    // accumulator, 32 i32; bytes the 8 head counts; the 16-pixel image.
    assert_eq!(
        buffers,
        vec![
            ("membranes", 128, "dtcm"),
            ("currents", 4 * 130, "sram"),
            ("spikes", 4, "sram"),
            ("scratch", 128, "sram"),
            ("bytes", 8, "sram"),
            ("image", 16, "sram"),
            ("reserve", 1024, "sram"),
        ]
    );
    assert_eq!(e.sram_bytes, 128 + 520 + 4 + 128 + 8 + 16 + 1024);
    let used: Vec<(&str, u64, u64)> = e
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r.used, r.capacity))
        .collect();
    assert_eq!(
        used,
        vec![
            ("flash", 1468, 0x1_0000),
            ("dtcm", 128, 256),
            ("sram", 1700, 4096)
        ]
    );
    assert!(e.fits);
    assert!(e.first_overflow().is_none());
    assert!(e.render().contains("fits test-board"));
}

#[test]
fn four_bit_weights_halve_weight_bytes() {
    // Every layer's inputs per output channel are even, so packing is exact.
    let base = "cell=0323.0013.0004.0000,ch=4,stages=2,fc=16,t=4,pool=1,cluster=1";
    let input = InputShape {
        channels: 2,
        height: 8,
        width: 8,
        classes: 10,
    };
    let b = catalog();
    let board = b.board("netduinoplus2").unwrap();
    let e8 = estimate(&arch(&format!("{base},bits=8")), &input, board, b.targets());
    let e4 = estimate(&arch(&format!("{base},bits=4")), &input, board, b.targets());
    let weights = |e: &Estimate| e.layers.iter().map(|l| l.weight_bytes).sum::<u64>();
    let consts = |e: &Estimate| e.layers.iter().map(|l| l.const_bytes).sum::<u64>();
    assert!(weights(&e8) > 0);
    assert_eq!(weights(&e4) * 2, weights(&e8));
    assert_eq!(consts(&e4), consts(&e8));
    assert_eq!(e8.flash_bytes - e4.flash_bytes, weights(&e8) / 2);
    assert_eq!(
        e8.sram_bytes, e4.sram_bytes,
        "weights live in flash, not RAM"
    );
}

#[test]
fn int4_pads_each_output_channel_to_a_byte() {
    // Stem 1->2 has 9 weights per channel: 5 bytes per channel at 4 bits.
    let a = arch("cell=0003.0000.0000.0000,ch=2,stages=1,fc=0,bits=4");
    let input = InputShape {
        channels: 1,
        height: 4,
        width: 4,
        classes: 2,
    };
    let b = board(
        vec![
            region("flash", RegionKind::Flash, 0, 4096),
            region("ram", RegionKind::Sram, 0x2000_0000, 4096),
        ],
        0,
    );
    let e = estimate_for_target(&a, &input, &b, &target(0));
    assert_eq!(e.layers[1].name, "stem");
    assert_eq!(e.layers[1].weight_bytes, 12); // 2 * 5 = 10, aligned to 12
}

#[test]
fn bigger_network_overflows_microbit_naming_the_region() {
    let c = catalog();
    let microbit = c.board("microbit").unwrap();
    let input = InputShape {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
    };
    let big = arch("cell=0303.0003.0000.0000,ch=32,stages=2,fc=256,t=4,pool=1,cluster=1,bits=8");
    let e = estimate(&big, &input, microbit, c.targets());
    assert!(!e.fits);
    let o = e.first_overflow().expect("must overflow");
    assert_eq!(o.region, "flash", "flash comes first in the profile: {o}");
    assert_eq!(o.excess, o.used - o.capacity);
    let ram = e.region("ram").unwrap();
    assert!(ram.used > ram.capacity, "the RAM overflows too: {ram:?}");
    let text = e.render();
    assert!(
        text.contains("does not fit microbit") && text.contains("`flash`"),
        "{text}"
    );

    // A small network fits the same board.
    let small = arch("cell=0003.0000.0000.0000,ch=4,stages=1,fc=0,t=4,pool=4,cluster=1,bits=8");
    let e = estimate(&small, &input, microbit, c.targets());
    assert!(e.fits, "{}", e.render());
}

#[test]
fn placement_honours_region_capacities() {
    // Everything but the membranes goes to the reserve region (the linker's `RAM`),
    // even when another region has more room: the firmware links it there.
    let b = board(
        vec![
            region("flash", RegionKind::Flash, 0, 1 << 20),
            region("a", RegionKind::Sram, 0x2000_0000, 200),
            region("b", RegionKind::Sram, 0x3000_0000, 150),
        ],
        0,
    );
    let mut buffers: Vec<Buffer> = ["x", "y"]
        .iter()
        .map(|n| Buffer {
            name: n.to_string(),
            kind: BufferKind::Current,
            bytes: 150,
            region: String::new(),
        })
        .collect();
    let used = planner::place(&mut buffers, &b, 0);
    assert_eq!(
        (buffers[0].region.as_str(), buffers[1].region.as_str()),
        ("a", "a")
    );
    assert_eq!((used[1].used, used[2].used), (300, 0));

    // On every shipped board and a range of networks: each buffer sits in a data region,
    // the regions add up to the RAM total, and `fits` agrees with the capacities.
    let c = catalog();
    let input = InputShape {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
    };
    for board in c.boards() {
        for ch in [4, 8, 16, 32] {
            for fc in [0, 64] {
                let a = arch(&format!(
                    "cell=0303.0003.0000.0000,ch={ch},stages=2,fc={fc},pool=2"
                ));
                let e = estimate(&a, &input, board, c.targets());
                let data: u64 = e
                    .regions
                    .iter()
                    .filter(|r| r.kind.holds_data())
                    .map(|r| r.used)
                    .sum();
                assert_eq!(data, e.sram_bytes, "{}", board.name);
                for buf in &e.buffers {
                    let r = e
                        .region(&buf.region)
                        .unwrap_or_else(|| panic!("{} unplaced", buf.name));
                    assert!(r.kind.holds_data());
                }
                assert_eq!(e.fits, e.regions.iter().all(|r| r.used <= r.capacity));
                if e.fits {
                    assert!(e.first_overflow().is_none());
                }
            }
        }
    }
}

#[test]
fn membranes_prefer_tightly_coupled_memory() {
    let c = catalog();
    let input = InputShape {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
    };
    let a = arch("cell=0303.0003.0000.0000,ch=4,stages=2,fc=64,pool=1");
    let e = estimate(
        &a,
        &input,
        c.board("stm32f746g-disco").unwrap(),
        c.targets(),
    );
    assert!(e.fits, "{}", e.render());
    let membranes: Vec<&Buffer> = e
        .buffers
        .iter()
        .filter(|b| b.kind == BufferKind::Membrane)
        .collect();
    assert!(
        membranes.iter().any(|b| b.region == "dtcm"),
        "{}",
        e.render()
    );
}

#[test]
fn backward_edges_keep_their_source_node_across_steps() {
    let a = arch("cell=0333.0003.0103.0000,ch=2,stages=1,fc=0");
    let input = InputShape {
        channels: 1,
        height: 4,
        width: 4,
        classes: 2,
    };
    let b = board(
        vec![
            region("flash", RegionKind::Flash, 0, 1 << 20),
            region("ram", RegionKind::Sram, 0x2000_0000, 1 << 20),
        ],
        0,
    );
    let e = estimate_for_target(&a, &input, &b, &target(0));
    // Backward skip 2->1 reads node 2 at t-1: node 2 gets a persistent slot of 2*4*4.
    let ws = workspace_layout(&a, &input).unwrap();
    assert_eq!(ws.persistent_nodes_i32, 32);
    assert_eq!(ws.currents_i32, 32 + 32 + 3 * 32 + 2);
    assert_eq!(e.buffer("currents").map(|b| b.bytes), Some(4 * 162));
    assert!(e.layers.iter().any(|l| l.name == "s0.b21.skip"));
}

#[test]
fn linux_board_counts_f32_weights_and_activations_against_the_budget() {
    let c = catalog();
    let jetson = c.board("jetson-nano").unwrap();
    let a = arch("cell=0003.0000.0000.0000,ch=2,stages=1,fc=0,bits=8");
    let input = InputShape {
        channels: 1,
        height: 4,
        width: 4,
        classes: 2,
    };
    let e = estimate(&a, &input, jetson, c.targets());
    assert_eq!(e.numerics, Numerics::Float32);
    assert_eq!(e.flash_bytes, 0);
    // Weights 18 + 36 + 16 = 70 floats; folded biases 2 + 2 + 2; head BN scale+bias 4.
    assert_eq!(e.buffer("weights").unwrap().bytes, 4 * (70 + 6 + 4));
    assert_eq!(e.buffer("input").unwrap().bytes, 4 * 16);
    assert_eq!(e.buffer("s0.e03.spikes").unwrap().bytes, 4 * 32);
    assert_eq!(e.regions[0].capacity, 512 << 20);
    assert!(e.fits);
}

#[test]
fn shrinking_feature_maps_are_reported_not_estimated() {
    let c = catalog();
    let a = arch("cell=0003.0000.0000.0000,ch=2,stages=4,fc=0");
    let input = InputShape {
        channels: 1,
        height: 8,
        width: 8,
        classes: 2,
    };
    let e = estimate(&a, &input, c.board("netduinoplus2").unwrap(), c.targets());
    assert!(!e.fits);
    assert!(
        e.problem.as_deref().unwrap().contains("nothing"),
        "{:?}",
        e.problem
    );
}

#[test]
fn input_shape_parses() {
    assert_eq!(
        InputShape::parse("3x32x32", 10).unwrap(),
        InputShape {
            channels: 3,
            height: 32,
            width: 32,
            classes: 10
        }
    );
    assert!(InputShape::parse("28x28", 10).is_err());
    assert!(InputShape::parse("1x0x28", 10).is_err());
    assert!(InputShape::parse("1x28x28", 0).is_err());
}

#[test]
fn ten_thousand_candidates_take_microseconds_each() {
    let c = catalog();
    let board = c.board("stm32f746g-disco").unwrap();
    let input = InputShape {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
    };
    let cells = [
        "0303.0003.0000.0000",
        "0333.0003.0100.0000",
        "0324.0013.0002.0000",
    ];
    let mut candidates = Vec::new();
    for i in 0..10_000usize {
        let cell = cells[i % cells.len()];
        let ch = [4, 8, 16, 32, 64][i / 3 % 5];
        let stages = 1 + i / 15 % 3;
        let fc = [0, 64, 256][i / 45 % 3];
        let pool = [1, 2][i / 135 % 2];
        let bits = [8, 4][i / 270 % 2];
        candidates.push(arch(&format!(
            "cell={cell},ch={ch},stages={stages},fc={fc},pool={pool},bits={bits}"
        )));
    }
    let start = std::time::Instant::now();
    let mut fitting = 0;
    for a in &candidates {
        fitting += estimate(a, &input, board, c.targets()).fits as usize;
    }
    let elapsed = start.elapsed();
    println!(
        "memory::estimate: {} candidates in {:?} ({:.2} us each), {fitting} fit {}",
        candidates.len(),
        elapsed,
        elapsed.as_secs_f64() * 1e6 / candidates.len() as f64,
        board.name
    );
    assert!(fitting > 0 && fitting < candidates.len());
}

/// Bytes of the constant arrays of a firmware network as the generator writes them:
/// each weight array rounded up to 4 (the linker's padding before the next i32 array),
/// the requantisation arrays 8 bytes per channel.
fn constant_bytes(n: &spikenas_firmware::Network<'_>) -> u64 {
    use spikenas_firmware::{ConvLayer, LinearLayer, Op, Requant, Weights};
    let w = |w: &Weights<'_>| (w.len() as u64).div_ceil(4) * 4;
    let rq = |r: &Requant<'_>| 4 * (r.mult.len() + r.bias.len()) as u64;
    let conv = |c: &ConvLayer<'_>| w(&c.weights) + rq(&c.requant);
    let linear = |l: &LinearLayer<'_>| w(&l.weights) + rq(&l.requant);
    let mut total = conv(&n.stem) + rq(&n.head.bn) + linear(&n.head.output);
    for st in n.stages {
        if let Some(r) = &st.reduction {
            total += rq(&r.bn) + conv(&r.conv);
        }
        for e in st.cell.edges {
            if let Op::Conv { conv: c, .. } = &e.op {
                total += conv(c);
            }
        }
    }
    if let Some(h) = &n.head.hidden {
        total += linear(&h.fc);
    }
    total
}

#[test]
fn workspace_and_constants_equal_the_firmware_byte_for_byte() {
    // Random cells (backward edges included), int8/int4, pools 1/2/4, stages 1-3, with
    // and without a hidden layer, populations of 1 and 3, on four input shapes: the
    // model's workspace must be the firmware's `workspace_layout()` field for field,
    // and its weights + constants the generated arrays.
    use crate::board_app::synthetic::SyntheticNetwork;
    let c = catalog();
    let board = c.board("microbit").unwrap();
    let inputs = ["1x8x8", "2x16x16", "1x28x28", "3x32x32"];
    let mut rng = crate::rng::Rng::new(7);
    let (mut checked, mut backward) = (0, 0);
    while checked < 150 {
        // A cell that passes the rules: per node pair one direction (never back into
        // node 0), op03 not zero.
        let mut ops = [[0u8; 4]; 4];
        for (i, j) in [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)] {
            let op = rng.below(5) as u8;
            if i > 0 && rng.below(3) == 0 {
                ops[j][i] = op;
            } else {
                ops[i][j] = op;
            }
        }
        ops[0][3] = ops[0][3].max(1);
        let rows: Vec<String> = ops
            .iter()
            .map(|r| r.iter().map(|d| char::from(b'0' + d)).collect())
            .collect();
        let cell = rows.join(".");
        let spec = format!(
            "cell={cell},ch={},stages={},fc={},pool={},bits={},cluster={}",
            [2, 3, 4, 8][rng.below(4)],
            1 + rng.below(3),
            [0, 16, 40][rng.below(3)],
            [1, 2, 4][rng.below(3)],
            [8, 4][rng.below(2)],
            [1, 3][rng.below(2)],
        );
        let Ok(a) = spec.parse::<Arch>() else {
            continue; // an invalid cell
        };
        let input = InputShape::parse(inputs[rng.below(inputs.len())], 10).unwrap();
        let ours = workspace_layout(&a, &input);
        let Ok(net) = SyntheticNetwork::new(&a, &input, checked as u64) else {
            assert!(
                ours.is_err(),
                "{a} on {input}: the model accepts what the firmware refuses"
            );
            continue;
        };
        let (theirs, constants) = net.with_network(|n| (n.workspace_layout(), constant_bytes(n)));
        assert_eq!(ours.unwrap(), theirs.unwrap(), "{a} on {input}");
        let e = estimate(&a, &input, board, c.targets());
        let model: u64 = e
            .layers
            .iter()
            .map(|l| l.weight_bytes + l.const_bytes)
            .sum();
        assert_eq!(model, constants, "{a} on {input}");
        backward += a.cell.edges().iter().any(|e| e.backward) as usize;
        checked += 1;
    }
    assert!(backward > 10, "only {backward} cells with backward edges");
}

#[test]
fn membranes_go_where_the_firmware_links_them() {
    // A real STM32F405 (CCM) and the emulated one (no CCM): the planner's region for
    // the membranes is the one codegen's memory.x puts `.fastdata` in.
    let c = catalog();
    let f405 = Profile::from_yaml(
        include_str!("../boards/testdata/f405-ccm.yaml"),
        Path::new("f405-ccm.yaml"),
        c.targets(),
    )
    .unwrap();
    let input = InputShape::parse("1x28x28", 10).unwrap();
    for board in [&f405, c.board("netduinoplus2").unwrap()] {
        for ch in [4, 16, 64] {
            let a = arch(&format!(
                "cell=0303.0003.0000.0000,ch={ch},stages=2,fc=64,pool=1"
            ));
            let e = estimate(&a, &input, board, c.targets());
            let membranes = e.buffer("membranes").unwrap();
            let (_, fast) = crate::board_app::codegen::memory_x(board, membranes.bytes).unwrap();
            let ram = board.reserve_region().unwrap().name.clone();
            assert_eq!(
                membranes.region,
                fast.unwrap_or(ram),
                "{} ch={ch}",
                board.name
            );
            for b in e.buffers.iter().filter(|b| b.name != "membranes") {
                assert_eq!(b.region, board.reserve_region().unwrap().name);
            }
        }
    }
    let small = arch("cell=0303.0003.0000.0000,ch=4,stages=2,fc=64,pool=1");
    let e = estimate(&small, &input, &f405, c.targets());
    assert_eq!(e.buffer("membranes").unwrap().region, "ccm");
}

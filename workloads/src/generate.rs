//! Generated workloads, the input of `powercut campaign` (docs/campaign.md): a seeded sequence
//! in which workload `i` depends only on (seed, `i`), so a campaign can be split into shards and
//! any workload rebuilt on its own.
//!
//! Two modes share the sequence. Bounded exhaustive: every sequence of 1 to `depth` operations of
//! [`ALPHABET`], in a fixed order (shorter first, then by alphabet position), as B3 and
//! CrashMonkey enumerate small workloads. Random: 1 to `max_random_ops` operations drawn with
//! random counts, sizes and commit groups. While exhaustive sequences remain, every
//! [`RANDOM_EVERY`]-th workload is a random one; afterwards all are.
//!
//! Each workload frames its operations with [`PROLOGUE`] and [`EPILOGUE`] appends, so that a
//! rotation, retirement or reopen always has records before it and writes after it, and draws
//! its engine options (durability, preallocation, segment size, recycling, staging size, groups in
//! flight) and file system from the seed.
//!
//! Faults (invariant I7): [`Op::FaultWrites`] arms EIO on the journal's writes and
//! [`Op::FaultFlush`] on every flush of the device, each followed by the append that meets it.
//! A fault is transient (`clear_after_steps: 1`) or, for writes, persistent until a
//! `clear_fault` the generator draws before a later operation (random mode), before a reopen,
//! an ingest or another fault, or before the epilogue. A flush fault is always transient: a
//! journal commit of ext4 that meets a failing flush aborts the file system. Since a fault may
//! poison the journal, a `reopen` follows before any ingest and before the epilogue. A random
//! workload without faults gets a power cut one time in two (`power_cut: { random: true }`,
//! then the default run after the crash: the two-crash check, I8). Every workload is written as YAML and read back with [`spec::parse`],
//! so it passes exactly the checks `powercut workload check` applies. The generator knows
//! nothing of the engine variant or the tier that will run the workload.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::spec::{
    self, AppendStep, DurabilitySpec, EioKind, FaultSpec, FaultTarget, FileOp, Filesystem,
    IngestStep, PowerCut, PreallocationSpec, SizeRange, SpecError, Step, Workload, WriterSpec,
    DEFAULT_EXT4_DISK_MIB, MIN_XFS_DISK_MIB,
};

/// Longest exhaustive sequence the generator enumerates (13 + 169 + 2197 sequences at 3).
pub const MAX_DEPTH: usize = 3;
/// While exhaustive sequences remain, workload `i` is random when `i % RANDOM_EVERY ==
/// RANDOM_EVERY - 1`.
pub const RANDOM_EVERY: u64 = 4;
/// Default bound on the operations of a random workload.
pub const DEFAULT_MAX_RANDOM_OPS: usize = 10;
/// Upper bound of `max_random_ops` (keeps a random workload a few seconds in a VM).
pub const MAX_RANDOM_OPS: usize = 40;

/// One operation of the alphabet; each becomes one or two workload steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Small records, each committed alone.
    Append,
    /// Records of about one 4 KiB block, so that records straddle block boundaries.
    AppendSpan,
    /// Records of two to four blocks.
    AppendBlocks,
    /// Small records committed in groups (`commit_every` > 1).
    GroupCommit,
    /// Concurrent appenders (ingest clients): several groups in flight.
    Ingest,
    /// Seal the segment, continue in the next.
    Rotate,
    /// Retire sealed segments (later rotations recycle them).
    Retire,
    /// Close and reopen the journal (recovery).
    Reopen,
    /// Create a file (fsynced, with its directory).
    Create,
    /// Rename a file (a file is created first when there is none).
    Rename,
    /// Remove a file (a file is created first when there is none).
    Remove,
    /// EIO on the journal's writes, then an append that meets it.
    FaultWrites,
    /// EIO on every flush of the device, then an append that meets it.
    FaultFlush,
}

/// The alphabet, in enumeration order.
pub const ALPHABET: [Op; 13] = [
    Op::Append,
    Op::AppendSpan,
    Op::AppendBlocks,
    Op::GroupCommit,
    Op::Ingest,
    Op::Rotate,
    Op::Retire,
    Op::Reopen,
    Op::Create,
    Op::Rename,
    Op::Remove,
    Op::FaultWrites,
    Op::FaultFlush,
];

impl Op {
    /// Short name, as in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Append => "append",
            Op::AppendSpan => "append_span",
            Op::AppendBlocks => "append_blocks",
            Op::GroupCommit => "group_commit",
            Op::Ingest => "ingest",
            Op::Rotate => "rotate",
            Op::Retire => "retire",
            Op::Reopen => "reopen",
            Op::Create => "create",
            Op::Rename => "rename",
            Op::Remove => "remove",
            Op::FaultWrites => "fault_writes",
            Op::FaultFlush => "fault_flush",
        }
    }
}

/// The step before a workload's operations: one small record, committed alone.
pub const PROLOGUE: AppendStep = AppendStep {
    count: 1,
    size: SizeRange {
        min_bytes: 24,
        max_bytes: 200,
    },
    commit_every: 1,
};

/// The step after a workload's operations: two records of up to 4000 bytes in one group (small
/// enough for the smallest staging size, which caps records at about 4 KiB).
pub const EPILOGUE: AppendStep = AppendStep {
    count: 2,
    size: SizeRange {
        min_bytes: 24,
        max_bytes: 4000,
    },
    commit_every: 2,
};

/// Payload size ranges of random appends: the payload header alone, small, up to a block,
/// straddling 4 KiB (and its multiples), several blocks, anything.
const SIZE_CLASSES: [(u64, u64); 9] = [
    (24, 24),
    (24, 64),
    (24, 1000),
    (1000, 4000),
    (4000, 4200),
    (4072, 4096),
    (8150, 8250),
    (8000, 12400),
    (12288, 16500),
];

/// Sizes of random records that span block boundaries.
const SPAN_CLASSES: [(u64, u64); 4] = [(4000, 4200), (4072, 4096), (8150, 8250), (12250, 12350)];

/// Sizes of random multi-block records.
const BLOCKS_CLASSES: [(u64, u64); 2] = [(8192, 12388), (12288, 16500)];

/// Sizes of files a random `create` writes.
const FILE_SIZES: [u64; 6] = [0, 1, 100, 4096, 5000, 12288];

/// Segment sizes drawn: small, so that appends fill segments and rotations happen.
const SEGMENT_SIZES: [u64; 4] = [64 * 1024, 128 * 1024, 256 * 1024, 1024 * 1024];

/// Staging sizes drawn (besides the engine default).
const STAGING_SIZES: [u64; 4] = [64 * 1024, 128 * 1024, 256 * 1024, 1024 * 1024];

/// How a workload of the sequence was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// One of the enumerated sequences of the alphabet.
    Exhaustive,
    /// Drawn at random.
    Random,
}

impl Mode {
    /// `exhaustive` or `random`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Exhaustive => "exhaustive",
            Mode::Random => "random",
        }
    }
}

/// What the sequence is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Seed of the whole sequence.
    pub seed: u64,
    /// Longest exhaustive sequence, 1 to [`MAX_DEPTH`].
    pub depth: usize,
    /// File systems drawn from (at least one).
    pub filesystems: Vec<Filesystem>,
    /// Most operations of a random workload (more than `depth`, at most [`MAX_RANDOM_OPS`]).
    pub max_random_ops: usize,
}

impl GeneratorConfig {
    /// Depth 3, ext4, random workloads of up to [`DEFAULT_MAX_RANDOM_OPS`] operations.
    pub fn new(seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            seed,
            depth: MAX_DEPTH,
            filesystems: vec![Filesystem::Ext4],
            max_random_ops: DEFAULT_MAX_RANDOM_OPS,
        }
    }
}

/// Why the generator cannot start or produce a workload.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The configuration is out of range.
    #[error("invalid generator configuration: {0}")]
    Config(String),
    /// A generated workload could not be written as YAML.
    #[error("generated workload {name} as YAML: {source}")]
    Yaml {
        /// The workload.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A generated workload does not pass the checks of a workload file (a generator bug).
    #[error("generated workload {name} is invalid: {source}")]
    Invalid {
        /// The workload.
        name: String,
        /// What the parser refused.
        #[source]
        source: Box<SpecError>,
    },
    /// The YAML of a generated workload reads back as another workload (a generator bug).
    #[error("generated workload {name} does not read back as itself from its YAML")]
    RoundTrip {
        /// The workload.
        name: String,
    },
}

/// One workload of the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Position in the sequence.
    pub index: u64,
    /// How it was made.
    pub mode: Mode,
    /// Its operations (between the prologue and the epilogue).
    pub ops: Vec<Op>,
    /// The workload, as read back from `yaml`.
    pub workload: Workload,
    /// The workload file: a comment saying where it comes from, then the YAML.
    pub yaml: String,
}

/// The seeded sequence of workloads.
#[derive(Debug, Clone)]
pub struct Generator {
    config: GeneratorConfig,
    exhaustive_total: u64,
}

impl Generator {
    /// Checks the configuration.
    pub fn new(config: GeneratorConfig) -> Result<Generator, GenerateError> {
        if !(1..=MAX_DEPTH).contains(&config.depth) {
            return Err(GenerateError::Config(format!(
                "exhaustive depth {} is outside 1..={MAX_DEPTH}",
                config.depth
            )));
        }
        if config.filesystems.is_empty() {
            return Err(GenerateError::Config("no file system to draw from".into()));
        }
        if config.max_random_ops <= config.depth || config.max_random_ops > MAX_RANDOM_OPS {
            return Err(GenerateError::Config(format!(
                "random workloads of up to {} operations: give more than the depth {} and at \
                 most {MAX_RANDOM_OPS}",
                config.max_random_ops, config.depth
            )));
        }
        let exhaustive_total = exhaustive_count(config.depth);
        Ok(Generator {
            config,
            exhaustive_total,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Number of exhaustive sequences (all lengths up to the depth).
    pub fn exhaustive_total(&self) -> u64 {
        self.exhaustive_total
    }

    /// Which exhaustive sequence workload `index` is, if it is one.
    pub fn exhaustive_ordinal(&self, index: u64) -> Option<u64> {
        if index % RANDOM_EVERY == RANDOM_EVERY - 1 {
            return None;
        }
        let ordinal = index - index / RANDOM_EVERY;
        (ordinal < self.exhaustive_total).then_some(ordinal)
    }

    /// Workload `index` of the sequence.
    pub fn generate(&self, index: u64) -> Result<Generated, GenerateError> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        // One stream per workload: workload i never depends on the ones before it.
        rng.set_stream(index);
        // 53 bits: exact as a JSON number in every reader (jq reads doubles).
        let workload_seed: u64 = rng.random::<u64>() >> 11;
        let (mode, ops) = self.ops(index, &mut rng);
        let mut builder = Builder::new(&mut rng, mode == Mode::Random);
        builder.steps.push(Step::Append(PROLOGUE));
        for &op in &ops {
            builder.push(op);
        }
        builder.finish();
        builder.steps.push(Step::Append(EPILOGUE));
        let steps = builder.steps;
        let mut workload = self.workload(index, mode, &ops, steps, &mut rng);
        workload.seed = workload_seed;
        // Faults and power cuts do not mix (the crash image would hold a half-failed state).
        if mode == Mode::Random && !workload.has_faults() && rng.random_bool(0.5) {
            workload.power_cut = Some(PowerCut::Random);
        }
        workload.writer = draw_writer(&mut rng, &workload);
        let (workload, yaml) = checked_yaml(workload)?;
        Ok(Generated {
            index,
            mode,
            ops,
            workload,
            yaml,
        })
    }

    /// The operations of workload `index`: its exhaustive sequence, or random ones.
    fn ops(&self, index: u64, rng: &mut ChaCha8Rng) -> (Mode, Vec<Op>) {
        if let Some(ordinal) = self.exhaustive_ordinal(index) {
            let ops = exhaustive_ops(ordinal, self.config.depth)
                .expect("an ordinal below the total names a sequence");
            return (Mode::Exhaustive, ops);
        }
        let len = rng.random_range(self.config.depth + 1..=self.config.max_random_ops);
        let ops = (0..len)
            .map(|_| *ALPHABET.choose(rng).expect("the alphabet is not empty"))
            .collect();
        (Mode::Random, ops)
    }

    /// The workload around `steps`: name, description, file system and disk (engine options
    /// and seed are set by the caller).
    fn workload(
        &self,
        index: u64,
        mode: Mode,
        ops: &[Op],
        steps: Vec<Step>,
        rng: &mut ChaCha8Rng,
    ) -> Workload {
        let seed = self.config.seed;
        let filesystem = *self
            .config
            .filesystems
            .choose(rng)
            .expect("checked not empty");
        let disk_mib = match filesystem {
            Filesystem::Ext4 => DEFAULT_EXT4_DISK_MIB,
            Filesystem::Xfs => MIN_XFS_DISK_MIB,
        };
        let names: Vec<&str> = ops.iter().map(|op| op.name()).collect();
        Workload {
            name: format!("gen-s{seed}-{index:06}"),
            seed: 0,
            description: format!(
                "powercut campaign seed {seed}, workload {index} ({}): {}",
                mode.name(),
                names.join(" ")
            ),
            filesystem,
            disk_mib,
            log_mib: 4 * disk_mib,
            writer: WriterSpec::default(),
            steps,
            power_cut: None,
            after_crash: None,
            guest_packages: Vec::new(),
            guest_files: Vec::new(),
            checker: None,
            allow_root_exec: false,
        }
    }

    /// The workloads from index 0 on (the sequence never ends).
    pub fn iter(&self) -> impl Iterator<Item = Result<Generated, GenerateError>> + '_ {
        (0u64..).map(|index| self.generate(index))
    }
}

/// Number of sequences of 1 to `depth` operations of the alphabet.
pub fn exhaustive_count(depth: usize) -> u64 {
    let letters = ALPHABET.len() as u64;
    (1..=depth as u32).map(|len| letters.pow(len)).sum()
}

/// Exhaustive sequence number `ordinal` (shorter sequences first, then in alphabet order, the
/// first operation varying slowest); `None` past the last one.
pub fn exhaustive_ops(ordinal: u64, depth: usize) -> Option<Vec<Op>> {
    let letters = ALPHABET.len() as u64;
    let mut rest = ordinal;
    for len in 1..=depth as u32 {
        let of_len = letters.pow(len);
        if rest < of_len {
            let mut ops = vec![Op::Append; len as usize];
            for slot in ops.iter_mut().rev() {
                *slot = ALPHABET[(rest % letters) as usize];
                rest /= letters;
            }
            return Some(ops);
        }
        rest -= of_len;
    }
    None
}

/// The kind of a step as reports and signatures count it: `append` (each record committed
/// alone), `group_commit`, `ingest`, `rotate`, `retire`, `reopen`, `create`, `rename`,
/// `remove`, `fault`, `clear_fault`.
pub fn step_kind(step: &Step) -> &'static str {
    match step {
        Step::Append(a) if a.commit_every == 1 => "append",
        Step::Append(_) => "group_commit",
        Step::Ingest(_) => "ingest",
        Step::Rotate => "rotate",
        Step::Retire => "retire",
        Step::Reopen => "reopen",
        Step::File(FileOp::Create { .. }) => "create",
        Step::File(FileOp::Rename { .. }) => "rename",
        Step::File(FileOp::Remove { .. }) => "remove",
        Step::Fault(_) => "fault",
        Step::ClearFault => "clear_fault",
        Step::Exec(_) => "exec",
    }
}

/// Writes `workload` as YAML and reads it back through the workload parser.
fn checked_yaml(workload: Workload) -> Result<(Workload, String), GenerateError> {
    let name = workload.name.clone();
    let body = serde_yaml::to_string(&workload).map_err(|source| GenerateError::Yaml {
        name: name.clone(),
        source,
    })?;
    let yaml = format!("# {}\n{body}", workload.description);
    let parsed =
        spec::parse(&yaml, &format!("{name}.yaml")).map_err(|source| GenerateError::Invalid {
            name: name.clone(),
            source: Box::new(source),
        })?;
    if parsed != workload {
        return Err(GenerateError::RoundTrip { name });
    }
    Ok((parsed, yaml))
}

/// Engine options, each field drawn. Whether a record fits the segment and staging sizes is the
/// spec's rule (the engine's limit): a draw it refuses is drawn again, and after
/// [`OPTION_DRAWS`] refusals the sizes fall back to 1 MiB segments and the default staging.
fn draw_writer(rng: &mut ChaCha8Rng, workload: &Workload) -> WriterSpec {
    let mut candidate = workload.clone();
    for _ in 0..OPTION_DRAWS {
        candidate.writer = draw_options(rng);
        if candidate.validate().is_ok() {
            return candidate.writer;
        }
    }
    WriterSpec {
        segment_bytes: Some(1024 * 1024),
        max_staging_bytes: None,
        ..candidate.writer
    }
}

/// Draws of engine options before the fallback sizes.
const OPTION_DRAWS: usize = 8;

fn draw_options(rng: &mut ChaCha8Rng) -> WriterSpec {
    let durability = *[DurabilitySpec::Dsync, DurabilitySpec::Fdatasync]
        .choose(rng)
        .expect("not empty");
    let preallocation = *[
        PreallocationSpec::Zero,
        PreallocationSpec::Fallocate,
        PreallocationSpec::None,
    ]
    .choose(rng)
    .expect("not empty");
    let segment_bytes = SEGMENT_SIZES.choose(rng).copied();
    let recycle = rng.random_bool(0.5);
    // A third of the workloads keep the engine's default staging size.
    let max_staging_bytes = if rng.random_ratio(1, 3) {
        None
    } else {
        STAGING_SIZES.choose(rng).copied()
    };
    // Pipelined group commits are where ordering bugs live: draw every depth.
    let groups_in_flight = Some(*[1u64, 2, 4, 8].choose(rng).expect("not empty"));
    WriterSpec {
        durability: Some(durability),
        segment_bytes,
        preallocation: Some(preallocation),
        recycle: Some(recycle),
        max_staging_bytes,
        groups_in_flight,
        ..WriterSpec::default()
    }
}

/// Turns operations into steps, keeping track of the files that exist.
struct Builder<'r> {
    rng: &'r mut ChaCha8Rng,
    /// Random parameters (otherwise the fixed ones of the exhaustive mode).
    random: bool,
    steps: Vec<Step>,
    /// Files that exist, oldest first.
    files: Vec<String>,
    /// Names are never reused: the spec refuses an unacknowledged change of a path whose
    /// state (or absence) was acknowledged.
    next_name: u32,
    /// A persistent fault is armed (transient ones are cleared by the step after them).
    armed: bool,
    /// A fault was armed since the last reopen: the journal may be poisoned.
    maybe_poisoned: bool,
}

impl<'r> Builder<'r> {
    fn new(rng: &'r mut ChaCha8Rng, random: bool) -> Self {
        Builder {
            rng,
            random,
            steps: Vec::new(),
            files: Vec::new(),
            next_name: 0,
            armed: false,
            maybe_poisoned: false,
        }
    }

    fn push(&mut self, op: Op) {
        self.before(op);
        let step = match op {
            Op::Append | Op::AppendSpan | Op::AppendBlocks | Op::GroupCommit => {
                Step::Append(self.append(op))
            }
            Op::Ingest => Step::Ingest(self.ingest()),
            Op::Rotate => Step::Rotate,
            Op::Retire => Step::Retire,
            Op::Reopen => Step::Reopen,
            Op::Create => self.create(),
            Op::Rename => self.rename(),
            Op::Remove => self.remove(),
            Op::FaultWrites | Op::FaultFlush => self.fault(op),
        };
        if op == Op::Reopen {
            self.maybe_poisoned = false;
        }
        self.steps.push(step);
    }

    /// What the fault rules need before `op`: a persistent fault cleared before a reopen, an
    /// ingest or another fault (and, in random mode, sometimes before anything); a reopen
    /// before an ingest that a fault may have poisoned.
    fn before(&mut self, op: Op) {
        if self.armed {
            let must = matches!(
                op,
                Op::Reopen | Op::Ingest | Op::FaultWrites | Op::FaultFlush
            );
            if must || (self.random && self.rng.random_ratio(1, 3)) {
                self.steps.push(Step::ClearFault);
                self.armed = false;
            }
        }
        if op == Op::Ingest && self.maybe_poisoned {
            self.steps.push(Step::Reopen);
            self.maybe_poisoned = false;
        }
    }

    /// Before the epilogue: no fault left armed, and a journal a fault may have poisoned
    /// reopened.
    fn finish(&mut self) {
        if self.armed {
            self.steps.push(Step::ClearFault);
            self.armed = false;
        }
        if self.maybe_poisoned {
            self.steps.push(Step::Reopen);
            self.maybe_poisoned = false;
        }
    }

    /// Arms a fault and returns the append that meets it. Exhaustive mode: writes fail until
    /// cleared, a flush fails once.
    fn fault(&mut self, op: Op) -> Step {
        let (eio, target, transient) = match op {
            Op::FaultFlush => (EioKind::Flush, FaultTarget::Device, true),
            _ => (
                EioKind::Writes,
                FaultTarget::Journal,
                self.random && self.rng.random_bool(0.5),
            ),
        };
        self.steps.push(Step::Fault(FaultSpec {
            eio,
            target,
            clear_after_steps: transient.then_some(1),
        }));
        self.armed = !transient;
        self.maybe_poisoned = true;
        let (count, commit_every) = if self.random {
            (self.rng.random_range(1..=6), self.rng.random_range(1..=3))
        } else {
            (2, 1)
        };
        Step::Append(AppendStep {
            count,
            size: SizeRange {
                min_bytes: 24,
                max_bytes: 3000,
            },
            commit_every,
        })
    }

    fn append(&mut self, op: Op) -> AppendStep {
        let (count, size, commit_every) = if self.random {
            self.random_append(op)
        } else {
            match op {
                Op::Append => (1, (24, 200), 1),
                Op::AppendSpan => (3, (4000, 4200), 1),
                Op::AppendBlocks => (2, (8200, 12300), 2),
                _ => (8, (24, 1500), 4),
            }
        };
        AppendStep {
            count,
            size: SizeRange {
                min_bytes: size.0,
                max_bytes: size.1,
            },
            commit_every,
        }
    }

    fn random_append(&mut self, op: Op) -> (u64, (u64, u64), u64) {
        let rng = &mut *self.rng;
        match op {
            Op::Append => (
                rng.random_range(1..=6),
                *SIZE_CLASSES.choose(rng).expect("not empty"),
                1,
            ),
            Op::AppendSpan => (
                rng.random_range(1..=8),
                *SPAN_CLASSES.choose(rng).expect("not empty"),
                rng.random_range(1..=3),
            ),
            Op::AppendBlocks => (
                rng.random_range(1..=6),
                *BLOCKS_CLASSES.choose(rng).expect("not empty"),
                rng.random_range(1..=3),
            ),
            _ => (
                rng.random_range(2..=24),
                *SIZE_CLASSES.choose(rng).expect("not empty"),
                rng.random_range(2..=8),
            ),
        }
    }

    fn ingest(&mut self) -> IngestStep {
        let (clients, records_per_client, size) = if self.random {
            (
                self.rng.random_range(2..=4),
                self.rng.random_range(1..=8),
                *SIZE_CLASSES[..6].choose(self.rng).expect("not empty"),
            )
        } else {
            (3, 4, (24, 3000))
        };
        IngestStep {
            clients,
            records_per_client,
            size: SizeRange {
                min_bytes: size.0,
                max_bytes: size.1,
            },
        }
    }

    fn fresh_name(&mut self) -> String {
        self.next_name += 1;
        // Some files in a subdirectory, so that renames cross directories.
        if self.next_name % 3 == 2 {
            format!("dir/f{}", self.next_name)
        } else {
            format!("f{}", self.next_name)
        }
    }

    fn create(&mut self) -> Step {
        let path = self.fresh_name();
        let (size_bytes, fsync_dir) = if self.random {
            (
                *FILE_SIZES.choose(self.rng).expect("not empty"),
                // A quarter without the directory fsync: run, but not acknowledged.
                !self.rng.random_ratio(1, 4),
            )
        } else {
            (5000, true)
        };
        self.files.push(path.clone());
        Step::File(FileOp::Create {
            path,
            size_bytes,
            fsync_file: true,
            fsync_dir,
        })
    }

    /// A file to rename or remove: an existing one, or one created by a step of its own.
    fn existing_file(&mut self) -> usize {
        if self.files.is_empty() {
            let create = self.create();
            self.steps.push(create);
        }
        if self.random {
            self.rng.random_range(0..self.files.len())
        } else {
            0
        }
    }

    fn rename(&mut self) -> Step {
        let at = self.existing_file();
        let from = self.files.remove(at);
        let to = self.fresh_name();
        self.files.push(to.clone());
        Step::File(FileOp::Rename {
            from,
            to,
            fsync_file: true,
            fsync_dir: true,
        })
    }

    fn remove(&mut self) -> Step {
        let at = self.existing_file();
        let path = self.files.remove(at);
        Step::File(FileOp::Remove {
            path,
            fsync_dir: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustive_ordinals_run_through_every_sequence_once() {
        let total = exhaustive_count(2);
        let mut seen = std::collections::BTreeSet::new();
        for ordinal in 0..total {
            let ops = exhaustive_ops(ordinal, 2).unwrap();
            assert!((1..=2).contains(&ops.len()));
            assert!(seen.insert(ops));
        }
        assert_eq!(exhaustive_ops(total, 2), None);
        assert_eq!(exhaustive_ops(0, 2), Some(vec![Op::Append]));
        let letters = ALPHABET.len() as u64;
        assert_eq!(
            exhaustive_ops(letters, 2),
            Some(vec![Op::Append, Op::Append])
        );
        assert_eq!(
            exhaustive_ops(letters + 1, 2),
            Some(vec![Op::Append, Op::AppendSpan])
        );
    }
}

//! What the model does, as data: a [`Case`] is a config and a list of
//! [`Action`]s, decoded from bytes so that a seeded generator and a fuzzer
//! drive the same interpreter.
//!
//! Decoding is total: any byte string is a case (bytes past the end read as
//! zero). [`encode`] is its inverse on decoded cases, so a shrunk case can be
//! printed as hex and replayed (`MODEL_BYTES=...`) or added to a fuzz corpus.

use std::time::Duration;

use reactor_loop::Config;

/// Most actions one byte string decodes to, so that a fuzzer's input is
/// bounded in time.
pub const MAX_ACTIONS: usize = 1024;

/// Most ops in one list (a reaction, a notification, an `on_open`).
const MAX_OPS: u8 = 3;

/// A source of bytes to decode from.
pub trait Entropy {
    /// The next byte; zero once exhausted.
    fn byte(&mut self) -> u8;
    /// Whether every byte has been read.
    fn exhausted(&self) -> bool;
    /// Two bytes, big-endian.
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
}

/// A fuzzer's input (or a replayed case).
pub struct SliceEntropy<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> SliceEntropy<'a> {
    pub fn new(data: &'a [u8]) -> SliceEntropy<'a> {
        SliceEntropy { data, pos: 0 }
    }
}

impl Entropy for SliceEntropy<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// SplitMix64: a tiny, well-mixed, seedable generator (no dependency).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// An endless stream of seeded random bytes.
pub struct RngEntropy {
    rng: SplitMix64,
    word: u64,
    left: u8,
}

impl RngEntropy {
    pub fn new(seed: u64) -> RngEntropy {
        RngEntropy { rng: SplitMix64::new(seed), word: 0, left: 0 }
    }
}

impl Entropy for RngEntropy {
    fn byte(&mut self) -> u8 {
        if self.left == 0 {
            self.word = self.rng.next_u64();
            self.left = 8;
        }
        self.left -= 1;
        let b = self.word as u8;
        self.word >>= 8;
        b
    }
    fn exhausted(&self) -> bool {
        false
    }
}

/// Where encoded bytes go.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
}

/// The reactor's limits for one case: small, so that every limit is reached.
/// Stored as the bytes it was decoded from; [`ModelConfig::config`] says
/// what they mean.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig(pub [u8; 5]);

impl ModelConfig {
    fn decode(src: &mut impl Entropy) -> ModelConfig {
        ModelConfig([src.byte(), src.byte(), src.byte(), src.byte(), src.byte()])
    }

    fn encode(&self, out: &mut Out) {
        self.0.iter().for_each(|&b| out.u8(b));
    }

    /// The reactor config these bytes select.
    pub fn config(&self) -> Config {
        let [b0, b1, b2, b3, b4] = self.0;
        let ms = Duration::from_millis;
        let read_buffer_size = [1024, 1024, 4096, 64 * 1024][usize::from(b0 % 4)];
        let read_budget = 1 + usize::from((b0 >> 2) % 4);
        let max_input = [16, 64, 300, 300, 2000, 2000, 20_000, 1 << 20][usize::from(b1 % 8)];
        let high = [32, 256, 256, 2048, 2048, 40_000][usize::from(b2 % 6)];
        let low = [0, high / 4, high / 2, high - 1][usize::from((b2 >> 3) % 4)];
        let max_output = high * [1, 4, 16, 64][usize::from((b2 >> 5) % 4)];
        let idle_timeout = [None, None, Some(ms(1000)), Some(ms(4000))][usize::from(b3 % 4)];
        let request_timeout = [None, Some(ms(700)), Some(ms(3000)), Some(ms(3000))][usize::from((b3 >> 2) % 4)];
        let send_timeout = [ms(1000), ms(2500)][usize::from((b3 >> 4) % 2)];
        let linger_timeout = [ms(300), ms(2000)][usize::from((b3 >> 5) % 2)];
        let shutdown_grace = [ms(1000), ms(5000)][usize::from(b4 % 2)];
        let stats_interval = [None, Some(ms(2000))][usize::from((b4 >> 1) % 2)];
        Config {
            read_buffer_size,
            read_budget,
            max_input,
            output_high_watermark: high,
            output_low_watermark: low,
            max_output,
            idle_timeout,
            request_timeout,
            send_timeout,
            linger_timeout,
            shutdown_grace,
            stats_interval,
            ..Config::default()
        }
    }
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.config();
        write!(
            f,
            "ModelConfig({:?}: read_buffer {} budget {} max_input {} watermarks {}..{} max_output {} \
             idle {:?} request {:?} send {:?} linger {:?} grace {:?} stats {:?})",
            self.0,
            c.read_buffer_size,
            c.read_budget,
            c.max_input,
            c.output_low_watermark,
            c.output_high_watermark,
            c.max_output,
            c.idle_timeout,
            c.request_timeout,
            c.send_timeout,
            c.linger_timeout,
            c.shutdown_grace,
            c.stats_interval
        )
    }
}

/// A whole test case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub config: ModelConfig,
    pub actions: Vec<Action>,
}

/// One step of the model. `conn` fields pick a connection: below 192, one
/// whose handler is still there (`conn % live`), if any; otherwise one of
/// all those opened so far (`conn % opened`), closed ones included, so that
/// stale ids are exercised too. With none opened the action does nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A client connects (`open`, or `open_with_window` when `window` is not
    /// `None`); its handler runs `ops` in `on_open`.
    Open { window: Option<usize>, profile: Profile, ops: Vec<Op> },
    /// The peer sends `len` new bytes, cut into `pieces` sends at points
    /// derived from `cut`.
    Send { conn: u8, len: usize, pieces: u8, cut: u8 },
    /// The peer ends its stream (once).
    Eof { conn: u8 },
    /// The peer resets the connection (once).
    Reset { conn: u8 },
    /// The peer's receive window: `None` reads everything, `Some(0)` nothing.
    Window { conn: u8, window: Option<usize> },
    /// The clock moves on.
    Advance { ms: u64 },
    /// The next time the handler's `on` callback runs, it reacts so.
    Script { conn: u8, on: Callback, reaction: Reaction },
    /// A posted job notifies the handler, which runs `ops` in `on_notify`.
    Notify { conn: u8, ops: Vec<Op> },
    /// A posted job writes to the connection by id.
    LoopWrite { conn: u8, len: usize },
    /// A posted job closes the connection by id.
    LoopClose { conn: u8 },
    /// A posted job shuts down the connection's write side by id.
    LoopShutdownWrite { conn: u8 },
    /// A posted job pauses or resumes the connection's reading.
    LoopPause { conn: u8, pause: bool },
    /// The reactor shuts down gracefully (a second time: at once).
    Shutdown,
}

/// What a handler does in one callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `try_write` of `len` fresh bytes.
    Write {
        len: usize,
    },
    /// `write_to` another connection (or this one).
    WriteTo {
        conn: u8,
        len: usize,
    },
    Close,
    Abort,
    ShutdownWrite,
    Pause,
    Resume,
    CloseConn {
        conn: u8,
    },
    ShutdownWriteConn {
        conn: u8,
    },
    PauseOf {
        conn: u8,
    },
    ResumeOf {
        conn: u8,
    },
    SetTimer {
        ms: u64,
    },
    SetPeriodic {
        ms: u64,
    },
    /// Cancels a timer: below 192, one of the handler's own live timers
    /// (`which % live`), if any; otherwise one of all the timers ever set
    /// (`which % count`), live or not, its own or not (then `cancel_timer`
    /// must say `false`).
    CancelTimer {
        which: u8,
    },
    PauseOnBackpressure(bool),
    /// The default consumption of later `on_input` calls.
    SetConsume(Consume),
    ShutdownReactor,
}

/// A handler callback that a [`Reaction`] can be scripted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callback {
    Input,
    PeerClosed,
    Drained,
    Timer,
    Idle,
    Shutdown,
    Close,
}

impl Callback {
    pub const COUNT: usize = 7;

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How much of the offered input `on_input` consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consume {
    All,
    Nothing,
    /// Half of it, rounded down (so a last byte is left over).
    Half,
    /// At most this many bytes (at least 1).
    Bytes(usize),
}

impl Consume {
    pub fn amount(self, offered: usize) -> usize {
        match self {
            Consume::All => offered,
            Consume::Nothing => 0,
            Consume::Half => offered / 2,
            Consume::Bytes(n) => n.min(offered),
        }
    }
}

/// A scripted reaction to one callback: run `ops`; `on_input` consumes
/// `consume`; `keep` means: `on_peer_closed` and `on_shutdown` do not close,
/// `on_idle` answers `Keep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    pub consume: Consume,
    pub keep: bool,
    pub ops: Vec<Op>,
}

/// How a handler behaves when no reaction is scripted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub consume: Consume,
    /// `on_input` writes this many fresh bytes for each byte it consumes
    /// (an echo, or one that doubles what it hears).
    pub echo: u8,
    pub peer_closed_keep: bool,
    pub idle_keep: bool,
    pub shutdown_keep: bool,
}

/// Decodes a byte string into a case (total: any bytes will do).
pub fn decode(bytes: &[u8]) -> Case {
    let mut src = SliceEntropy::new(bytes);
    let config = ModelConfig::decode(&mut src);
    let mut actions = Vec::new();
    while !src.exhausted() && actions.len() < MAX_ACTIONS {
        actions.push(decode_action(&mut src));
    }
    Case { config, actions }
}

/// The case of `seed`: `steps` actions from a seeded stream of bytes,
/// decoded exactly as a fuzzer's bytes would be.
pub fn generate(seed: u64, steps: usize) -> Case {
    let mut src = RngEntropy::new(seed);
    let config = ModelConfig::decode(&mut src);
    let actions = (0..steps).map(|_| decode_action(&mut src)).collect();
    Case { config, actions }
}

/// The bytes that [`decode`] turns back into `case`.
pub fn encode(case: &Case) -> Vec<u8> {
    let mut out = Out::default();
    case.config.encode(&mut out);
    for action in &case.actions {
        encode_action(action, &mut out);
    }
    out.0
}

/// A length: mostly small, sometimes several output chunks (16 KiB) long.
fn decode_len(src: &mut impl Entropy) -> usize {
    let tier = src.byte();
    let raw = usize::from(src.u16());
    match tier % 8 {
        0..=3 => raw % 64,
        4 | 5 => raw % 1024,
        6 => raw % 8192,
        _ => raw % 49_152,
    }
}

fn encode_len(len: usize, out: &mut Out) {
    assert!(len < 49_152, "length {len} cannot be encoded");
    out.u8(7);
    out.u16(len as u16);
}

/// A duration in milliseconds: mostly short, sometimes past every timeout.
fn decode_ms(src: &mut impl Entropy) -> u64 {
    let tier = src.byte();
    let raw = u64::from(src.u16());
    match tier % 16 {
        0..=8 => raw % 50,
        9..=12 => raw % 1000,
        13 | 14 => raw % 5000,
        _ => (raw % 2000) * 10,
    }
}

fn encode_ms(ms: u64, out: &mut Out) {
    if ms < 5000 {
        out.u8(13);
        out.u16(ms as u16);
    } else {
        assert!(ms.is_multiple_of(10) && ms < 20_000, "duration {ms} ms cannot be encoded");
        out.u8(15);
        out.u16((ms / 10) as u16);
    }
}

/// A write's length: mostly below the smallest watermark, sometimes several
/// output chunks (16 KiB) long.
fn decode_write_len(src: &mut impl Entropy) -> usize {
    let tier = src.byte();
    let raw = usize::from(src.u16());
    match tier % 16 {
        0..=9 => raw % 32,
        10..=12 => raw % 256,
        13 | 14 => raw % 2048,
        _ => raw % 49_152,
    }
}

fn encode_write_len(len: usize, out: &mut Out) {
    assert!(len < 49_152, "length {len} cannot be encoded");
    out.u8(15);
    out.u16(len as u16);
}

/// A periodic timer's period: at least 100 ms, so that long clock jumps fire
/// it a bounded number of times.
fn decode_period(src: &mut impl Entropy) -> u64 {
    100 + u64::from(src.u16()) % 2000
}

fn encode_period(ms: u64, out: &mut Out) {
    assert!((100..2100).contains(&ms), "period {ms} ms cannot be encoded");
    out.u16((ms - 100) as u16);
}

fn decode_window(src: &mut impl Entropy) -> Option<usize> {
    let kind = src.byte();
    let n = usize::from(src.byte());
    match kind % 4 {
        0 => None,
        1 => Some(0),
        2 => Some(n),
        _ => Some(n * 64),
    }
}

fn encode_window(window: Option<usize>, out: &mut Out) {
    match window {
        None => {
            out.u8(0);
            out.u8(0);
        }
        Some(n) if n <= 255 => {
            out.u8(2);
            out.u8(n as u8);
        }
        Some(n) => {
            assert!(n.is_multiple_of(64) && n / 64 <= 255, "window {n} cannot be encoded");
            out.u8(3);
            out.u8((n / 64) as u8);
        }
    }
}

fn decode_consume(src: &mut impl Entropy) -> Consume {
    let kind = src.byte();
    let n = usize::from(src.byte());
    match kind % 8 {
        0..=3 => Consume::All,
        4 => Consume::Nothing,
        5 => Consume::Half,
        _ => Consume::Bytes(1 + n % 64),
    }
}

fn encode_consume(consume: Consume, out: &mut Out) {
    let (kind, n) = match consume {
        Consume::All => (0, 0),
        Consume::Nothing => (4, 0),
        Consume::Half => (5, 0),
        Consume::Bytes(n) => {
            assert!((1..=64).contains(&n), "consume {n} cannot be encoded");
            (6, (n - 1) as u8)
        }
    };
    out.u8(kind);
    out.u8(n);
}

fn decode_profile(src: &mut impl Entropy) -> Profile {
    let consume = decode_consume(src);
    let echo = [0, 1, 1, 2][usize::from(src.byte() % 4)];
    let flags = src.byte();
    Profile {
        consume,
        echo,
        peer_closed_keep: flags & 3 == 0,
        idle_keep: (flags >> 2) & 3 == 0,
        shutdown_keep: (flags >> 4) & 7 == 0,
    }
}

fn encode_profile(profile: &Profile, out: &mut Out) {
    encode_consume(profile.consume, out);
    out.u8(match profile.echo {
        0 => 0,
        1 => 1,
        2 => 3,
        n => panic!("echo {n} cannot be encoded"),
    });
    let flags =
        u8::from(!profile.peer_closed_keep) | u8::from(!profile.idle_keep) << 2 | u8::from(!profile.shutdown_keep) << 4;
    out.u8(flags);
}

fn decode_callback(src: &mut impl Entropy) -> Callback {
    match src.byte() % 16 {
        0..=4 | 15 => Callback::Input,
        5 | 6 => Callback::PeerClosed,
        7 | 8 => Callback::Drained,
        9 | 10 => Callback::Timer,
        11 => Callback::Idle,
        12 => Callback::Shutdown,
        _ => Callback::Close,
    }
}

fn encode_callback(callback: Callback, out: &mut Out) {
    out.u8(match callback {
        Callback::Input => 0,
        Callback::PeerClosed => 5,
        Callback::Drained => 7,
        Callback::Timer => 9,
        Callback::Idle => 11,
        Callback::Shutdown => 12,
        Callback::Close => 13,
    });
}

fn decode_ops(src: &mut impl Entropy) -> Vec<Op> {
    let count = src.byte() % (MAX_OPS + 1);
    (0..count).map(|_| decode_op(src)).collect()
}

fn encode_ops(ops: &[Op], out: &mut Out) {
    assert!(ops.len() <= usize::from(MAX_OPS), "too many ops to encode");
    out.u8(ops.len() as u8);
    for op in ops {
        encode_op(op, out);
    }
}

/// Op codes: one byte, ranges weighted by how often each op is wanted; 255
/// escapes to the rare ones.
fn decode_op(src: &mut impl Entropy) -> Op {
    match src.byte() {
        0..=69 => Op::Write { len: decode_write_len(src) },
        70..=99 => Op::WriteTo { conn: src.byte(), len: decode_write_len(src) },
        100..=107 => Op::Close,
        108..=111 => Op::Abort,
        112..=119 => Op::ShutdownWrite,
        120..=134 => Op::Pause,
        135..=152 => Op::Resume,
        153..=160 => Op::CloseConn { conn: src.byte() },
        161..=165 => Op::ShutdownWriteConn { conn: src.byte() },
        166..=172 => Op::PauseOf { conn: src.byte() },
        173..=180 => Op::ResumeOf { conn: src.byte() },
        181..=205 => Op::SetTimer { ms: decode_ms(src) },
        206..=214 => Op::SetPeriodic { ms: decode_period(src) },
        215..=230 => Op::CancelTimer { which: src.byte() },
        231..=238 => Op::PauseOnBackpressure(src.byte().is_multiple_of(2)),
        239..=254 => Op::SetConsume(decode_consume(src)),
        255 => match src.byte() {
            0..=63 => Op::ShutdownReactor,
            _ => Op::Write { len: decode_write_len(src) },
        },
    }
}

fn encode_op(op: &Op, out: &mut Out) {
    match *op {
        Op::Write { len } => {
            out.u8(0);
            encode_write_len(len, out);
        }
        Op::WriteTo { conn, len } => {
            out.u8(70);
            out.u8(conn);
            encode_write_len(len, out);
        }
        Op::Close => out.u8(100),
        Op::Abort => out.u8(108),
        Op::ShutdownWrite => out.u8(112),
        Op::Pause => out.u8(120),
        Op::Resume => out.u8(135),
        Op::CloseConn { conn } => {
            out.u8(153);
            out.u8(conn);
        }
        Op::ShutdownWriteConn { conn } => {
            out.u8(161);
            out.u8(conn);
        }
        Op::PauseOf { conn } => {
            out.u8(166);
            out.u8(conn);
        }
        Op::ResumeOf { conn } => {
            out.u8(173);
            out.u8(conn);
        }
        Op::SetTimer { ms } => {
            out.u8(181);
            encode_ms(ms, out);
        }
        Op::SetPeriodic { ms } => {
            out.u8(206);
            encode_period(ms, out);
        }
        Op::CancelTimer { which } => {
            out.u8(215);
            out.u8(which);
        }
        Op::PauseOnBackpressure(pause) => {
            out.u8(231);
            out.u8(u8::from(!pause));
        }
        Op::SetConsume(consume) => {
            out.u8(239);
            encode_consume(consume, out);
        }
        Op::ShutdownReactor => {
            out.u8(255);
            out.u8(0);
        }
    }
}

/// Action codes: one byte, weighted; 255 escapes to the rare shutdown.
fn decode_action(src: &mut impl Entropy) -> Action {
    match src.byte() {
        0..=69 => Action::Send { conn: src.byte(), len: decode_len(src), pieces: 1 + src.byte() % 6, cut: src.byte() },
        70..=79 => Action::Eof { conn: src.byte() },
        80..=82 => Action::Reset { conn: src.byte() },
        83..=109 => Action::Window { conn: src.byte(), window: decode_window(src) },
        110..=139 => Action::Advance { ms: decode_ms(src) },
        140..=151 => Action::Open { window: decode_window(src), profile: decode_profile(src), ops: decode_ops(src) },
        152..=199 => Action::Script {
            conn: src.byte(),
            on: decode_callback(src),
            reaction: Reaction {
                consume: decode_consume(src),
                keep: src.byte().is_multiple_of(2),
                ops: decode_ops(src),
            },
        },
        200..=229 => Action::Notify { conn: src.byte(), ops: decode_ops(src) },
        230..=244 => Action::LoopWrite { conn: src.byte(), len: decode_write_len(src) },
        245..=249 => Action::LoopClose { conn: src.byte() },
        250..=252 => Action::LoopShutdownWrite { conn: src.byte() },
        253 | 254 => Action::LoopPause { conn: src.byte(), pause: src.byte().is_multiple_of(2) },
        255 => match src.byte() {
            0..=47 => Action::Shutdown,
            _ => Action::Advance { ms: decode_ms(src) },
        },
    }
}

fn encode_action(action: &Action, out: &mut Out) {
    match action {
        Action::Send { conn, len, pieces, cut } => {
            assert!((1..=6).contains(pieces), "pieces {pieces} cannot be encoded");
            out.u8(0);
            out.u8(*conn);
            encode_len(*len, out);
            out.u8(pieces - 1);
            out.u8(*cut);
        }
        Action::Eof { conn } => {
            out.u8(70);
            out.u8(*conn);
        }
        Action::Reset { conn } => {
            out.u8(80);
            out.u8(*conn);
        }
        Action::Window { conn, window } => {
            out.u8(83);
            out.u8(*conn);
            encode_window(*window, out);
        }
        Action::Advance { ms } => {
            out.u8(110);
            encode_ms(*ms, out);
        }
        Action::Open { window, profile, ops } => {
            out.u8(140);
            encode_window(*window, out);
            encode_profile(profile, out);
            encode_ops(ops, out);
        }
        Action::Script { conn, on, reaction } => {
            out.u8(152);
            out.u8(*conn);
            encode_callback(*on, out);
            encode_consume(reaction.consume, out);
            out.u8(u8::from(!reaction.keep));
            encode_ops(&reaction.ops, out);
        }
        Action::Notify { conn, ops } => {
            out.u8(200);
            out.u8(*conn);
            encode_ops(ops, out);
        }
        Action::LoopWrite { conn, len } => {
            out.u8(230);
            out.u8(*conn);
            encode_write_len(*len, out);
        }
        Action::LoopClose { conn } => {
            out.u8(245);
            out.u8(*conn);
        }
        Action::LoopShutdownWrite { conn } => {
            out.u8(250);
            out.u8(*conn);
        }
        Action::LoopPause { conn, pause } => {
            out.u8(253);
            out.u8(*conn);
            out.u8(u8::from(!pause));
        }
        Action::Shutdown => {
            out.u8(255);
            out.u8(0);
        }
    }
}

/// Where a send of `len` bytes in `pieces` is cut: `pieces - 1` points
/// picked from `cut` (some pieces may be empty, a read that finds nothing).
pub fn cut_points(len: usize, pieces: u8, cut: u8) -> Vec<usize> {
    let mut state = u64::from(cut) + 1;
    let mut points: Vec<usize> = (1..pieces)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as usize) % (len + 1)
        })
        .collect();
    points.sort_unstable();
    points
}

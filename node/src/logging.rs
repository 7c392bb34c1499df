//! The node's log (§12.8): text or JSON lines on standard error, at the level `node.toml`
//! chooses. quorate's own events follow `log_level`; its dependencies (quinn, rustls) are
//! kept to warnings so that a debug log shows requests, not packets.

use serde::Deserialize;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `log_format` (§12.8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `log_level` (§12.8): the least severe level written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Also what the node is doing: models served, roster changes, start and stop.
    #[default]
    Info,
    /// Also one event per request (kind, outcome, duration, peer key id).
    Debug,
    /// Everything quorate logs.
    Trace,
}

impl From<LogLevel> for LevelFilter {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

/// The filter: quorate's crates at `level`, everything else at most at warnings.
fn targets(level: LogLevel) -> Targets {
    let ours = LevelFilter::from(level);
    Targets::new()
        .with_target("quorate", ours)
        .with_default(ours.min(LevelFilter::WARN))
}

/// Installs the process's log writer. The first call wins: a process serving one node has
/// one log, and a second call (tests running nodes in one process) changes nothing.
pub fn init(format: LogFormat, level: LogLevel) {
    let filter = targets(level);
    let registry = tracing_subscriber::registry();
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init(),
    };
    // Already installed: keep the first.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_crates_follow_the_level_and_dependencies_stay_at_warnings() {
        use tracing::Level;
        let t = targets(LogLevel::Debug);
        assert!(t.would_enable("quorate_node::mesh::server", &Level::DEBUG));
        assert!(!t.would_enable("quinn_proto::connection", &Level::DEBUG));
        assert!(!t.would_enable("quinn_proto::connection", &Level::INFO));
        assert!(t.would_enable("quinn_proto::connection", &Level::WARN));
        let quiet = targets(LogLevel::Error);
        assert!(!quiet.would_enable("quorate_node::audit", &Level::WARN));
        assert!(!quiet.would_enable("rustls", &Level::WARN));
        assert!(quiet.would_enable("rustls", &Level::ERROR));
    }

    #[test]
    fn formats_and_levels_parse_from_their_config_names() {
        #[derive(Deserialize)]
        struct C {
            f: LogFormat,
            l: LogLevel,
        }
        let c: C = toml::from_str("f = \"json\"\nl = \"debug\"").unwrap();
        assert_eq!((c.f, c.l), (LogFormat::Json, LogLevel::Debug));
        assert!(toml::from_str::<C>("f = \"xml\"\nl = \"info\"").is_err());
        assert!(toml::from_str::<C>("f = \"text\"\nl = \"verbose\"").is_err());
    }
}

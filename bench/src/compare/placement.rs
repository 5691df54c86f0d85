//! Where the server and the client threads run: which cores, how many
//! client threads, and what to warn about.

use super::CompareArgs;

/// Where the server and the client threads run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Placement {
    /// `None`: unpinned.
    pub(super) server_core: Option<usize>,
    /// `None`: unpinned.
    pub(super) client_cores: Option<Vec<usize>>,
    pub(super) client_threads: usize,
    /// Warnings to print.
    pub(super) warnings: Vec<String>,
}

/// Decides the placement from the arguments, the number of connections and
/// the cores this process may run on (`None`: unknown).
pub(super) fn place(args: &CompareArgs, connections: usize, available: Option<&[usize]>) -> Result<Placement, String> {
    let threads_for = |cores: usize| cores.clamp(1, connections.max(1));
    let available = match available {
        Some(cores) if cores.len() >= 2 => cores,
        other => {
            let why = match other {
                Some(cores) => format!("only {} core is available", cores.len()),
                None => "the available cores are unknown".to_string(),
            };
            return Ok(Placement {
                server_core: None,
                client_cores: None,
                client_threads: 1,
                warnings: vec![format!(
                    "{why}: the server and the client cannot be pinned apart; running unpinned, \
                     one client thread (figures are only indicative)"
                )],
            });
        }
    };
    if !available.contains(&args.server_core) {
        return Err(format!("--server-core {} is not one of the available cores {available:?}", args.server_core));
    }
    let mut warnings = Vec::new();
    let clients = match &args.client_cores {
        Some(cores) => {
            if cores.is_empty() {
                return Err("--client-cores lists no core".into());
            }
            if let Some(core) = cores.iter().find(|core| !available.contains(core)) {
                return Err(format!("--client-cores: {core} is not one of the available cores {available:?}"));
            }
            if cores.contains(&args.server_core) {
                warnings.push(format!(
                    "client core {} is also the server's: they compete for it, and the server's CPU time \
                     per message is no longer fair",
                    args.server_core
                ));
            }
            cores.clone()
        }
        None => available.iter().copied().filter(|&core| core != args.server_core).collect(),
    };
    Ok(Placement {
        server_core: Some(args.server_core),
        client_threads: threads_for(clients.len()),
        client_cores: Some(clients),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::tests::args;

    #[test]
    fn placement_pins_apart_or_warns() {
        let two = [0, 1];
        let p = place(&args(&[]), 100, Some(&two)).unwrap();
        assert_eq!((p.server_core, p.client_cores.clone(), p.client_threads), (Some(0), Some(vec![1]), 1));
        assert!(p.warnings.is_empty());
        let eight: Vec<usize> = (0..8).collect();
        let p = place(&args(&["--server-core", "3"]), 4, Some(&eight)).unwrap();
        assert_eq!(p.client_cores, Some(vec![0, 1, 2, 4, 5, 6, 7]));
        assert_eq!(p.client_threads, 4, "no more threads than connections");
        let p = place(&args(&[]), 100, Some(&[0])).unwrap();
        assert_eq!((p.server_core, p.client_cores.clone(), p.client_threads), (None, None, 1));
        assert!(p.warnings[0].contains("cannot be pinned"));
        assert!(place(&args(&["--server-core", "2"]), 100, Some(&two)).is_err());
        assert!(place(&args(&["--client-cores", "5"]), 100, Some(&two)).is_err());
        let p = place(&args(&["--client-cores", "0,1"]), 100, Some(&two)).unwrap();
        assert!(p.warnings[0].contains("compete"));
    }
}

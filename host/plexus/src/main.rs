//! `plexus`: a CNI plugin when `CNI_COMMAND` is set, a command-line tool otherwise, and
//! the IPAM plugin when invoked as `plexus-ipam`.

use std::process::ExitCode;

use plexus::{IPAM_NAME, cli, fds, ipam, plugin};

fn main() -> ExitCode {
    // First, while there is one thread and no child. Should it fail (no /proc on an old
    // kernel), children inherit what the caller left open, as they did before: no reason
    // to fail the invocation.
    let _ = fds::close_inherited_on_exec();
    let invoked_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| Some(path.file_name()?.to_os_string()));
    if invoked_as.is_some_and(|name| name == IPAM_NAME) {
        // Only ever the IPAM plugin under this name, whatever the environment says.
        ipam::main()
    } else if std::env::var_os("CNI_COMMAND").is_some() {
        plugin::main()
    } else {
        cli::main()
    }
}

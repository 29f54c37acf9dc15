//! `completions` and `manpage`: documentation generated from the
//! argument definitions.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use super::Cli;

/// Shell completions for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut impl Write) {
    clap_complete::generate(shell, &mut Cli::command(), "addrmunge", out);
}

/// The man page, with one section per subcommand so that `man addrmunge`
/// documents every option.
pub fn manpage(out: &mut impl Write) -> Result<()> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("addrmunge-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).bin_name(name.replace('-', " "));
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let man = clap_mangen::Man::new(sub);
        man.render_description_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_options_section(out)?;
    }
    Ok(())
}

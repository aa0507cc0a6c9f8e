//! What one nsjail is started to run, as its caller names it.

/// What one nsjail runs, beside what every jail gets: a jail's runner (`Nsjail::arguments`),
/// or another role's program (a zygote's, `jail::zygote`), in a jail made alike.
pub(crate) struct Role<'a> {
    /// nsjail's `--config` argument (a role may hand nsjail a config of its own on an fd).
    pub config: &'a str,
    /// nsjail options the role needs beyond every jail's (id mappings, capabilities, mounts).
    pub options: Vec<String>,
    /// The Python source the isolated interpreter runs, and its arguments.
    pub source: &'a str,
    pub args: Vec<String>,
}

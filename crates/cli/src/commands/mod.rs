//! Command dispatch and what commands share: opening the database from the global options.

pub mod admin;
pub mod data;
pub mod load;

use crate::cli::{Cli, Command, DEFAULT_DB_DIR, GlobalArgs};
use crate::error::{Result, warn};
use crate::output::Output;
use sealdb::{Db, Options};
use std::path::PathBuf;

/// Whether a command may create the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Writers (`put`, `import`, `load`) create a missing database.
    IfMissing,
    /// Everything else refuses a directory without one, so a typo in `--db` never leaves an
    /// empty database (and a fresh master key) behind.
    Never,
}

/// What every command gets: the global options and standard output.
#[derive(Debug)]
pub struct Ctx {
    /// The global options.
    pub global: GlobalArgs,
    /// Standard output, text or JSON.
    pub out: Output,
}

impl Ctx {
    /// The database directory in force.
    pub fn db_dir(&self) -> PathBuf {
        self.global
            .db
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_DIR))
    }

    /// Engine options from the global options (keystore, KMS, cipher).
    pub fn options(&self, create: Create) -> Options {
        Options {
            create_if_missing: create == Create::IfMissing,
            keystore_dir: self.global.keystore.clone(),
            kms_dir: self.global.kms.clone(),
            cipher: self
                .global
                .cipher
                .map_or_else(|| Options::default().cipher, Into::into),
            ..Options::default()
        }
    }

    /// Opens the database with [`Ctx::options`].
    pub fn open(&self, create: Create) -> Result<Db> {
        self.open_with(self.options(create))
    }

    /// Opens the database with the given options, warning when `--cipher` asks for something
    /// an existing database does not use (the cipher is chosen once, at creation).
    pub fn open_with(&self, opts: Options) -> Result<Db> {
        let dir = self.db_dir();
        let db = Db::open(&dir, opts)?;
        if let Some(wanted) = self.global.cipher {
            let wanted: sealdb::CipherId = wanted.into();
            if !db.open_stats().created && db.cipher() != wanted {
                warn(format!(
                    "--cipher {} ignored: the database at {} already uses {}",
                    wanted.name(),
                    dir.display(),
                    db.cipher().name()
                ));
            }
        }
        Ok(db)
    }
}

/// Runs the command. The database (and its background threads) is closed before this
/// returns, so the caller can exit at once.
pub fn run(cli: Cli) -> Result<()> {
    let mut ctx = Ctx {
        out: Output::new(cli.global.json),
        global: cli.global,
    };
    let result = match cli.command {
        Command::Put(a) => data::put(&mut ctx, &a),
        Command::Get(a) => data::get(&mut ctx, &a),
        Command::Delete(a) => data::delete(&mut ctx, &a),
        Command::Scan(a) => data::scan(&mut ctx, &a),
        Command::Import(a) => data::import(&mut ctx, &a),
        Command::Export(a) => data::export(&mut ctx, &a),
        Command::Load(a) => load::load(&mut ctx, &a),
        Command::Flush => admin::flush(&mut ctx),
        Command::Compact => admin::compact(&mut ctx),
        Command::Stats => admin::stats(&mut ctx),
        Command::Verify => admin::verify(&mut ctx),
        Command::Inspect(a) => crate::inspect::inspect(&mut ctx, &a),
        Command::Demo(a) => crate::demo::demo(&mut ctx, &a),
    };
    // Whatever was printed before a failure still reaches the reader.
    let flushed = ctx.out.flush();
    result.and(flushed)
}

//! Command dispatch and what commands share: opening the database from the global options.

pub mod admin;
pub mod backup;
pub mod data;
pub mod index;
pub mod keys;
pub mod keyspace;
pub mod kms;
pub mod load;
pub mod stream;

use crate::cli::{Cli, Command, DEFAULT_DB_DIR, GlobalArgs};
use crate::error::{CliError, Result, warn};
use crate::output::Output;
use sealdb::{Db, Options};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long commands wait for a database another process has open, by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Whether a command may create the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Commands that add data or schema (`put`, `import`, `load`, `keyspace create`,
    /// `index create`, `stream enable`) create a missing database.
    IfMissing,
    /// Everything else refuses a directory without one, so a typo in `--db` never leaves an
    /// empty database (and a fresh master key) behind.
    Never,
    /// Read commands (`get`, `scan`, `export`, `stats`, `verify`, `index list/query`,
    /// `keys status`, `stream read/info`) open read-only: they change nothing on disk and run beside a writer.
    ReadOnly,
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

    /// Engine options that need no database: where the keystore and the local KMS are.
    pub fn base_options(&self) -> Options {
        Options {
            keystore_dir: self.global.keystore.clone(),
            kms_dir: self.global.kms.clone(),
            allow_rollback: self.global.allow_rollback,
            ..Options::default()
        }
    }

    /// Engine options from the global options (keystore, KMS, cipher, master key of a new
    /// database), with the provider of an AWS KMS master key the database's KEYS file names.
    pub fn options(&self, create: Create) -> Result<Options> {
        let dir = self.db_dir();
        let exists = dir.join(sealdb_crypto::keysfile::KEYS_FILE_NAME).exists();
        if !exists && create != Create::IfMissing {
            // The one rule, stated where it bites (documented in `--help`).
            return Err(CliError::other(format!(
                "no database at {} (only put, import, load, keyspace create, index create \
                 and stream enable create one)",
                dir.display()
            )));
        }
        let master_key = match &self.global.master_key {
            // Only a database about to be created takes it (like --cipher).
            Some(target) if !exists && create == Create::IfMissing => {
                crate::master::master_key(target)?
            }
            _ => sealdb::MasterKey::Owned,
        };
        let providers = if exists {
            crate::master::providers_for_db(&dir)?
        } else {
            Vec::new()
        };
        Ok(Options {
            create_if_missing: create == Create::IfMissing,
            // Accepting a rolled-back directory re-anchors it, which is a write: with
            // --allow-rollback even read commands open for writing.
            read_only: create == Create::ReadOnly && !self.global.allow_rollback,
            cipher: self
                .global
                .cipher
                .map_or_else(|| Options::default().cipher, Into::into),
            master_key,
            providers,
            pitr_window: self.global.pitr_window,
            ..self.base_options()
        })
    }

    /// Opens the database with [`Ctx::options`].
    pub fn open(&self, create: Create) -> Result<Db> {
        self.open_with(self.options(create)?)
    }

    /// How long to wait for a database another process has open (`--lock-wait`).
    pub fn lock_wait(&self) -> Duration {
        self.global.lock_wait.unwrap_or(DEFAULT_LOCK_WAIT)
    }

    /// Opens the database with the given options, waiting up to `wait` while another process
    /// has it open (`None`: for as long as it takes).
    pub fn open_waiting(&self, opts: &Options, wait: Option<Duration>) -> Result<Db> {
        let dir = self.db_dir();
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match Db::open(&dir, opts.clone()) {
                Err(sealdb::Error::Locked(_)) if wait.is_none_or(|w| start.elapsed() < w) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                other => return Ok(other?),
            }
        }
    }

    /// Opens the database with the given options, warning when `--cipher` or `--master-key`
    /// asks for something an existing database does not use (both are chosen once, at
    /// creation).
    pub fn open_with(&self, opts: Options) -> Result<Db> {
        let dir = self.db_dir();
        let db = self.open_waiting(&opts, Some(self.lock_wait()))?;
        if let Some(wanted) = &self.global.master_key
            && !db.open_stats().created
            && !crate::master::same_key(wanted, &db.master_key())
        {
            warn(format!(
                "--master-key {wanted} ignored: the database at {} already uses {} \
                 (use `sealdb keys switch --to {wanted}` to change it)",
                dir.display(),
                db.master_key()
            ));
        }
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
        Command::Stats(a) => admin::stats(&mut ctx, &a),
        Command::Verify => admin::verify(&mut ctx),
        Command::Inspect(a) => crate::inspect::inspect(&mut ctx, &a),
        Command::Demo(a) => crate::demo::demo(&mut ctx, &a),
        Command::Keys(c) => keys::run(&mut ctx, &c),
        Command::Kms(c) => kms::run(&mut ctx, &c),
        Command::Index(c) => index::run(&mut ctx, &c),
        Command::Stream(c) => stream::run(&mut ctx, &c),
        Command::Backup(c) => backup::run(&mut ctx, &c),
        Command::Restore(a) => backup::restore(&mut ctx, &a),
        Command::Keyspace(c) => keyspace::run(&mut ctx, &c),
        Command::Completion(a) => crate::operator::completion(&mut ctx, &a),
        Command::Man(a) => crate::operator::man(&mut ctx, &a),
        Command::Upgrade(a) => admin::upgrade(&mut ctx, &a),
    };
    // Whatever was printed before a failure still reaches the reader.
    let flushed = ctx.out.flush();
    result.and(flushed)
}

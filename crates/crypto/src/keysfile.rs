//! The KEYS file: a database's data keys, wrapped under its master key.
//!
//! It is a sealed file (kind `keys`, always ChaCha20-Poly1305) whose header extension is the
//! *key envelope*: the master key's provider and id, and each data-key version wrapped by that
//! provider. These are identifiers and ciphertexts, needed in clear to know whom to ask for
//! the unwrap. Its single, final block is sealed under a file key derived from the current
//! data key and holds the database's settings (data cipher, current version, a generation
//! counter); since every block's associated data binds a digest of the header extension,
//! opening that block authenticates the envelope too.
//!
//! The file is only ever replaced whole and atomically (temporary file, fsync, rename, fsync of
//! the directory): after a crash it is the old file or the new one, so the database opens
//! under exactly one master key. Opening never creates or overwrites anything.

use crate::keyring::Keyring;
use crate::keys::{DatabaseId, SecretKey};
use crate::provider::{EncryptionContext, KeyDescriptor, KeyProvider, SharedProvider};
use crate::sealed::{ArtifactKind, BlockSealer, CipherId, FileHeader};
use crate::{Error, IntegrityReason, Result};
use sealdb_base::{DecodeError, PutBytes, Reader};
use sealdb_vfs::FileSystem;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The KEYS file's name inside the data directory.
pub const KEYS_FILE_NAME: &str = "KEYS";
const ENVELOPE_VERSION: u8 = 1;
const PAYLOAD_VERSION: u8 = 1;
const MAX_KEYS_FILE_LEN: u64 = 2 << 20;
const MAX_VERSIONS: usize = 4096;
const MAX_NAME_LEN: usize = 2048;
const MAX_WRAPPED_LEN: usize = 8192;

/// What the envelope says, readable without any key (for `keys status` and for choosing the
/// provider). Not authenticated until the KEYS file is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysSummary {
    /// The database.
    pub database_id: DatabaseId,
    /// The master key wrapping the data keys.
    pub master: KeyDescriptor,
    /// Data-key versions present.
    pub versions: Vec<u32>,
    /// The version new files use.
    pub current_version: u32,
}

/// An opened (unwrapped and authenticated) KEYS file.
#[derive(Debug)]
pub struct KeysFile {
    path: PathBuf,
    keyring: Keyring,
    master: KeyDescriptor,
    wrapped: BTreeMap<u32, Vec<u8>>,
    version_created: BTreeMap<u32, u64>,
    data_cipher: CipherId,
    generation: u64,
    created_at: u64,
}

impl KeysFile {
    /// Creates the KEYS file of a new database in `dir` with one fresh data key wrapped by
    /// `provider`. Refuses if a KEYS file already exists: key material is never replaced.
    pub fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        provider: &dyn KeyProvider,
        database_id: DatabaseId,
        data_cipher: CipherId,
    ) -> Result<Self> {
        let path = dir.join(KEYS_FILE_NAME);
        if fs.exists(&path) {
            return Err(Error::invalid_argument(
                "the KEYS file already exists; refusing to replace key material".into(),
            )
            .in_file(&path));
        }
        let ctx = EncryptionContext { database_id };
        let (key, wrapped_key) = provider.generate_data_key(&ctx)?;
        let mut versions = BTreeMap::new();
        versions.insert(1, key);
        let now = crate::unix_now();
        let file = Self {
            path,
            keyring: Keyring::new(database_id, versions, 1)?,
            master: provider.descriptor(),
            wrapped: BTreeMap::from([(1, wrapped_key)]),
            version_created: BTreeMap::from([(1, now)]),
            data_cipher,
            generation: 1,
            created_at: now,
        };
        file.write(fs)?;
        Ok(file)
    }

    /// Reads the envelope without unwrapping anything.
    pub fn peek(fs: &dyn FileSystem, dir: &Path) -> Result<KeysSummary> {
        let path = dir.join(KEYS_FILE_NAME);
        let bytes = read_keys_bytes(fs, &path)?;
        let label = path.display().to_string();
        let header = FileHeader::decode(&bytes, &label)?;
        let env = Envelope::decode(&header.extension, &label)?;
        Ok(KeysSummary {
            database_id: header.database_id,
            master: env.master,
            versions: env.wrapped.keys().copied().collect(),
            current_version: header.data_key_version,
        })
    }

    /// Opens the KEYS file in `dir`: asks `resolve` for the provider its envelope names,
    /// unwraps every data-key version, then authenticates the whole file. Fails with the
    /// provider's typed error (wrong, disabled, destroyed or missing key) and changes nothing.
    pub fn open(
        fs: &dyn FileSystem,
        dir: &Path,
        resolve: impl FnOnce(&KeyDescriptor) -> Result<SharedProvider>,
    ) -> Result<(Self, SharedProvider)> {
        let path = dir.join(KEYS_FILE_NAME);
        let bytes = read_keys_bytes(fs, &path)?;
        let label = path.display().to_string();
        let provider_holder;
        let file = {
            let header = FileHeader::decode(&bytes, &label)?;
            if header.kind != ArtifactKind::Keys {
                return Err(Error::integrity(
                    &label,
                    None,
                    IntegrityReason::HeaderMismatch("artifact kind"),
                ));
            }
            if header.cipher != CipherId::ChaCha20Poly1305 {
                return Err(Error::integrity(
                    &label,
                    None,
                    IntegrityReason::HeaderMismatch("cipher"),
                ));
            }
            let env = Envelope::decode(&header.extension, &label)?;
            let provider = resolve(&env.master)?;
            if provider.descriptor() != env.master {
                return Err(Error::invalid_argument(format!(
                    "resolver returned key {} for {}",
                    provider.descriptor(),
                    env.master
                ))
                .in_file(&path));
            }
            let ctx = EncryptionContext {
                database_id: header.database_id,
            };
            let mut versions: BTreeMap<u32, SecretKey> = BTreeMap::new();
            for (v, w) in &env.wrapped {
                versions.insert(*v, provider.unwrap(w, &ctx)?);
            }
            // Only a missing current version is the file's fault; a bad
            // `SEALDB_SEAL_BACKEND` is the caller's and keeps its own error.
            let keyring = Keyring::new(header.database_id, versions, header.data_key_version)
                .map_err(|e| match e {
                    Error::UnknownDataKeyVersion(_) => Error::integrity(
                        &label,
                        None,
                        IntegrityReason::Malformed("current version not in envelope".into()),
                    ),
                    other => other,
                })?;
            let data_start = header.encoded_len() as usize;
            let sealer = BlockSealer::for_header(&keyring, header, label.clone())?;
            let raw = bytes
                .get(data_start..)
                .ok_or_else(|| Error::integrity(&label, None, IntegrityReason::Truncated))?
                .to_vec();
            let block = sealer.open(data_start as u64, raw)?;
            if !block.is_final {
                return Err(Error::integrity(
                    &label,
                    Some(data_start as u64),
                    IntegrityReason::Truncated,
                ));
            }
            let payload = Payload::decode(&block.data, &label)?;
            let payload_versions: Vec<u32> = payload.version_created.keys().copied().collect();
            let env_versions: Vec<u32> = env.wrapped.keys().copied().collect();
            if payload_versions != env_versions
                || payload.current_version != keyring.current_version()
            {
                return Err(Error::integrity(
                    &label,
                    Some(data_start as u64),
                    IntegrityReason::Malformed("payload disagrees with envelope".into()),
                ));
            }
            provider_holder = provider;
            Self {
                path,
                keyring,
                master: env.master,
                wrapped: env.wrapped,
                version_created: payload.version_created,
                data_cipher: payload.data_cipher,
                generation: payload.generation,
                created_at: payload.created_at,
            }
        };
        Ok((file, provider_holder))
    }

    /// The unwrapped data keys.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The master key currently wrapping the data keys.
    pub fn master(&self) -> &KeyDescriptor {
        &self.master
    }

    /// The database id.
    pub fn database_id(&self) -> DatabaseId {
        self.keyring.database_id()
    }

    /// The cipher the database's data files use.
    pub fn data_cipher(&self) -> CipherId {
        self.data_cipher
    }

    /// Incremented on every rewrite of the KEYS file.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the database was created (Unix seconds).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// When each data-key version was created (Unix seconds).
    pub fn version_created(&self) -> &BTreeMap<u32, u64> {
        &self.version_created
    }

    /// Re-wraps every data-key version under `new_master` and atomically replaces the KEYS
    /// file. No data file changes: their keys derive from the same data keys. The old master
    /// key stays usable throughout; after a crash the file is wholly old or wholly new.
    pub fn switch_master_key(
        &mut self,
        fs: &dyn FileSystem,
        new_master: &dyn KeyProvider,
    ) -> Result<()> {
        let ctx = EncryptionContext {
            database_id: self.database_id(),
        };
        let mut rewrapped = BTreeMap::new();
        for v in self.keyring.versions() {
            let key = self.keyring.data_key(v)?;
            let wrapped = new_master.wrap(key, &ctx)?;
            // Prove the new wrap opens before committing to it.
            let back = new_master.unwrap(&wrapped, &ctx)?;
            if back != *key {
                return Err(Error::WrongMasterKey {
                    provider: new_master.descriptor().provider,
                    key_id: new_master.descriptor().key_id,
                });
            }
            rewrapped.insert(v, wrapped);
        }
        let mut next = self.clone_meta();
        next.wrapped = rewrapped;
        next.master = new_master.descriptor();
        next.generation += 1;
        next.write(fs)?;
        *self = next;
        Ok(())
    }

    /// Adds a fresh data-key version (wrapped by `master`, which must be the current master
    /// key) and makes it current; returns the new version number.
    pub fn add_data_key_version(
        &mut self,
        fs: &dyn FileSystem,
        master: &dyn KeyProvider,
    ) -> Result<u32> {
        self.require_master(master)?;
        let version = self.keyring.versions().last().copied().unwrap_or(0) + 1;
        let ctx = EncryptionContext {
            database_id: self.database_id(),
        };
        let (key, wrapped) = master.generate_data_key(&ctx)?;
        let mut next = self.clone_meta();
        next.keyring.add_version(version, key);
        next.wrapped.insert(version, wrapped);
        next.version_created.insert(version, crate::unix_now());
        next.generation += 1;
        next.write(fs)?;
        *self = next;
        Ok(version)
    }

    /// Removes a data-key version that no live file uses any more (the caller checks that).
    pub fn drop_data_key_version(
        &mut self,
        fs: &dyn FileSystem,
        master: &dyn KeyProvider,
        version: u32,
    ) -> Result<()> {
        self.require_master(master)?;
        let mut next = self.clone_meta();
        next.keyring.remove_version(version)?;
        next.wrapped.remove(&version);
        next.version_created.remove(&version);
        next.generation += 1;
        next.write(fs)?;
        *self = next;
        Ok(())
    }

    fn require_master(&self, master: &dyn KeyProvider) -> Result<()> {
        if master.descriptor() != self.master {
            return Err(Error::invalid_argument(format!(
                "data keys are wrapped by {}, not {}",
                self.master,
                master.descriptor()
            )));
        }
        Ok(())
    }

    fn clone_meta(&self) -> Self {
        Self {
            path: self.path.clone(),
            keyring: self.keyring.clone(),
            master: self.master.clone(),
            wrapped: self.wrapped.clone(),
            version_created: self.version_created.clone(),
            data_cipher: self.data_cipher,
            generation: self.generation,
            created_at: self.created_at,
        }
    }

    /// Encodes the whole file (header with envelope, one sealed final block).
    fn encode(&self) -> Result<Vec<u8>> {
        let env = Envelope {
            master: self.master.clone(),
            wrapped: self.wrapped.clone(),
        };
        let sealer = BlockSealer::for_new_file(
            &self.keyring,
            ArtifactKind::Keys,
            CipherId::ChaCha20Poly1305,
            env.encode()?,
            self.path.display().to_string(),
        )?;
        let mut out = sealer.header().encode();
        let payload = Payload {
            data_cipher: self.data_cipher,
            current_version: self.keyring.current_version(),
            generation: self.generation,
            created_at: self.created_at,
            version_created: self.version_created.clone(),
        }
        .encode();
        let offset = out.len() as u64;
        sealer.seal_into(offset, true, &payload, &mut out)?;
        Ok(out)
    }

    fn write(&self, fs: &dyn FileSystem) -> Result<()> {
        let bytes = self.encode()?;
        sealdb_vfs::write_file_atomic(fs, &self.path, &bytes).map_err(|e| Error::io(&self.path, e))
    }

    /// Decodes a KEYS file's bytes as far as possible without keys (envelope and header);
    /// used by the fuzz target. Returns the number of wrapped versions.
    pub fn decode_untrusted(bytes: &[u8]) -> Result<usize> {
        let header = FileHeader::decode(bytes, "KEYS")?;
        let env = Envelope::decode(&header.extension, "KEYS")?;
        Ok(env.wrapped.len())
    }

    /// Decodes a KEYS payload (the plaintext of its sealed block), for the fuzz target.
    pub fn decode_payload_untrusted(bytes: &[u8]) -> Result<u64> {
        Ok(Payload::decode(bytes, "KEYS")?.generation)
    }
}

fn read_keys_bytes(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>> {
    match sealdb_vfs::read_file_limited(fs, path, MAX_KEYS_FILE_LEN) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(Error::integrity(
            path.display().to_string(),
            None,
            IntegrityReason::BadLength,
        )),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The integrity error of a malformed envelope or payload in the file `label`.
fn malformed(label: &str, e: DecodeError) -> Error {
    Error::integrity(label, None, IntegrityReason::Malformed(e.to_string()))
}

fn put_string(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = u16::try_from(s.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_NAME_LEN)
        .ok_or_else(|| Error::invalid_argument(format!("name too long: {} bytes", s.len())))?;
    out.put_u16(len).put_raw(s.as_bytes());
    Ok(())
}

/// The clear key envelope carried in the KEYS file's header extension.
struct Envelope {
    master: KeyDescriptor,
    wrapped: BTreeMap<u32, Vec<u8>>,
}

impl Envelope {
    fn encode(&self) -> Result<Vec<u8>> {
        let mut out = vec![ENVELOPE_VERSION];
        put_string(&mut out, &self.master.provider)?;
        put_string(&mut out, &self.master.key_id)?;
        let count = u16::try_from(self.wrapped.len())
            .map_err(|_| Error::invalid_argument("too many data-key versions".into()))?;
        out.put_u16(count);
        for (v, w) in &self.wrapped {
            let len = u16::try_from(w.len())
                .ok()
                .filter(|l| usize::from(*l) <= MAX_WRAPPED_LEN)
                .ok_or_else(|| Error::invalid_argument("wrapped key too long".into()))?;
            out.put_u32(*v).put_u16(len).put_raw(w);
        }
        Ok(out)
    }

    fn decode(bytes: &[u8], label: &str) -> Result<Self> {
        Self::decode_fields(&mut Reader::new(bytes)).map_err(|e| malformed(label, e))
    }

    fn decode_fields(c: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        let version = c.u8("envelope version")?;
        if version != ENVELOPE_VERSION {
            return Err(c.invalid("envelope version", format!("{version} is not supported")));
        }
        let provider = c.str_u16(MAX_NAME_LEN, "provider")?.to_owned();
        let key_id = c.str_u16(MAX_NAME_LEN, "key id")?.to_owned();
        let count = usize::from(c.u16("version count")?);
        if count == 0 || count > MAX_VERSIONS {
            return Err(c.invalid(
                "version count",
                format!("{count} is not 1 to {MAX_VERSIONS}"),
            ));
        }
        let mut wrapped = BTreeMap::new();
        for _ in 0..count {
            let v = c.u32("version")?;
            let w = c.bytes_u16(MAX_WRAPPED_LEN, "wrapped key")?.to_vec();
            if wrapped.insert(v, w).is_some() {
                return Err(c.invalid("version", format!("duplicate version {v}")));
            }
        }
        c.finish("envelope")?;
        Ok(Self {
            master: KeyDescriptor::new(provider, key_id),
            wrapped,
        })
    }
}

/// The sealed settings block of the KEYS file.
struct Payload {
    data_cipher: CipherId,
    current_version: u32,
    generation: u64,
    created_at: u64,
    version_created: BTreeMap<u32, u64>,
}

impl Payload {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![PAYLOAD_VERSION, self.data_cipher as u8];
        let count = u16::try_from(self.version_created.len()).unwrap_or(u16::MAX);
        out.put_u32(self.current_version)
            .put_u64(self.generation)
            .put_u64(self.created_at)
            .put_u16(count);
        for (v, t) in self.version_created.iter().take(usize::from(count)) {
            out.put_u32(*v).put_u64(*t);
        }
        out
    }

    fn decode(bytes: &[u8], label: &str) -> Result<Self> {
        Self::decode_fields(&mut Reader::new(bytes)).map_err(|e| malformed(label, e))
    }

    fn decode_fields(c: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        let version = c.u8("payload version")?;
        if version != PAYLOAD_VERSION {
            return Err(c.invalid("payload version", format!("{version} is not supported")));
        }
        let code = c.u8("cipher")?;
        let data_cipher = CipherId::from_u8(code)
            .ok_or_else(|| c.invalid("cipher", format!("unknown cipher {code}")))?;
        let current_version = c.u32("current version")?;
        let generation = c.u64("generation")?;
        let created_at = c.u64("created at")?;
        let count = usize::from(c.u16("version count")?);
        if count > MAX_VERSIONS {
            return Err(c.invalid("version count", format!("{count} exceeds {MAX_VERSIONS}")));
        }
        let mut version_created = BTreeMap::new();
        for _ in 0..count {
            let v = c.u32("version")?;
            let t = c.u64("version time")?;
            version_created.insert(v, t);
        }
        c.finish("payload")?;
        Ok(Self {
            data_cipher,
            current_version,
            generation,
            created_at,
            version_created,
        })
    }
}

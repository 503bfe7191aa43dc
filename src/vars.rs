//! Named variables: byte values kept apart from the file tree, in their
//! own B-tree referenced from the commit record. Small values live in the
//! tree's leaves; larger ones are stored like file data.

use crate::btree;
use crate::crypto::seal::Kind;
use crate::data::pack::Member;
use crate::data::read;
use crate::error::{Error, Result};
use crate::format::entry::{Content, VarRecord};
use crate::lockbox::Lockbox;
use crate::path::check_var_name;
use crate::staged::Merged;

/// Largest variable value, bytes.
pub const MAX_VAR_LEN: usize = 64 * 1024 * 1024;

fn decode_var(v: &[u8], at: u64) -> Result<VarRecord> {
    VarRecord::decode(v, at)
}

impl Lockbox {
    fn var_record(&self, key: &[u8]) -> Result<Option<VarRecord>> {
        if let Some(staged) = self.vars.get(key) {
            return Ok(staged.clone());
        }
        match btree::get(&self.store, Kind::VarNode, &self.committed.vars, key)? {
            Some(v) => Ok(Some(VarRecord::decode(&v, 0)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn var_bytes(&self, r: &VarRecord) -> Result<Vec<u8>> {
        let len = usize::try_from(r.len)
            .ok()
            .filter(|&l| l <= MAX_VAR_LEN)
            .ok_or_else(|| Error::corrupt("variable longer than the limit", 0))?;
        let pending: &[u8] = match r.content {
            Content::Pending { pack_id, .. } => self
                .pack
                .buf(pack_id)
                .ok_or_else(|| Error::corrupt("staged variable lost its pack", 0))?,
            _ => &[],
        };
        let mut out = vec![0u8; len];
        let n = read::read_at(&self.store, &r.content, r.len, 0, &mut out, pending)?;
        if n != len {
            return Err(Error::corrupt("variable shorter than its length", 0));
        }
        Ok(out)
    }

    /// Sets variable `name` to `value` (up to 64 MiB).
    pub fn set_var(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.guarded(|lb| {
            check_var_name(name)?;
            if value.len() > MAX_VAR_LEN {
                return Err(Error::LimitExceeded {
                    what: "variable value over 64 MiB".into(),
                    limit: MAX_VAR_LEN as u64,
                });
            }
            let key = name.as_bytes().to_vec();
            let content = lb.store_bytes(Member::Var(key.clone()), value)?;
            lb.vars.insert(
                key,
                Some(VarRecord {
                    len: value.len() as u64,
                    content,
                }),
            );
            Ok(())
        })
    }

    /// Removes variable `name`; returns whether it existed.
    pub fn remove_var(&mut self, name: &str) -> Result<bool> {
        self.guarded(|lb| {
            check_var_name(name)?;
            let key = name.as_bytes().to_vec();
            let existed = lb.var_record(&key)?.is_some();
            if existed {
                lb.vars.insert(key, None);
            }
            Ok(existed)
        })
    }

    /// The value of variable `name`, or `None`.
    pub fn var(&self, name: &str) -> Result<Option<Vec<u8>>> {
        check_var_name(name)?;
        match self.var_record(name.as_bytes())? {
            Some(r) => Ok(Some(self.var_bytes(&r)?)),
            None => Ok(None),
        }
    }

    /// Every variable as `(name, value)`, in name order, streaming.
    pub fn vars(&self) -> Result<impl Iterator<Item = Result<(String, Vec<u8>)>> + '_> {
        let it = Merged::new(
            &self.store,
            Kind::VarNode,
            &self.committed.vars,
            &self.vars,
            &[],
            None,
            decode_var,
        )?;
        Ok(it.map(|item| {
            let (k, r) = item?;
            let name = String::from_utf8(k)
                .map_err(|_| Error::corrupt("variable name is not UTF-8", 0))?;
            Ok((name, self.var_bytes(&r)?))
        }))
    }
}

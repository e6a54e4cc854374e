//! In-memory lease table (durability mode `memory`, tests, and the engine's unit tests).

use hashbrown::HashMap;
use std::collections::BTreeSet;

use super::{BindingState, CommitId, Duid, IaType, Lease, LeaseTable, Resource, TableError};

/// Leases keyed by resource, with a per-client index and an expiry queue.
#[derive(Default)]
pub struct MemoryTable {
    by_resource: HashMap<Resource, Lease>,
    by_client: HashMap<Duid, Vec<Resource>>,
    /// (expires_at, resource) for every record, so expiry never scans the whole table.
    expiry: BTreeSet<(u64, Resource)>,
    last_commit: CommitId,
    dirty: bool,
}

impl MemoryTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn unlink(&mut self, old: &Lease) {
        self.expiry.remove(&(old.expires_at, old.resource));
        if let Some(list) = self.by_client.get_mut(&old.duid) {
            list.retain(|r| *r != old.resource);
            if list.is_empty() {
                self.by_client.remove(&old.duid);
            }
        }
    }
}

impl LeaseTable for MemoryTable {
    fn ia_leases(&self, duid: &Duid, ia_type: IaType, iaid: u32, out: &mut Vec<Lease>) {
        if let Some(list) = self.by_client.get(duid) {
            out.extend(
                list.iter()
                    .filter_map(|r| self.by_resource.get(r))
                    .filter(|l| l.ia_type == ia_type && l.iaid == iaid)
                    .copied(),
            );
        }
    }

    fn client_leases(&self, duid: &Duid, out: &mut Vec<Lease>) {
        if let Some(list) = self.by_client.get(duid) {
            out.extend(list.iter().filter_map(|r| self.by_resource.get(r)).copied());
        }
    }

    fn by_resource(&self, resource: &Resource) -> Option<Lease> {
        self.by_resource.get(resource).copied()
    }

    fn upsert(&mut self, lease: Lease) -> Result<(), TableError> {
        if let Some(old) = self.by_resource.insert(lease.resource, lease) {
            self.unlink(&old);
        }
        self.by_client
            .entry(lease.duid)
            .or_default()
            .push(lease.resource);
        self.expiry.insert((lease.expires_at, lease.resource));
        self.dirty = true;
        Ok(())
    }

    fn remove(&mut self, resource: &Resource) -> Result<(), TableError> {
        if let Some(old) = self.by_resource.remove(resource) {
            self.unlink(&old);
            self.dirty = true;
        }
        Ok(())
    }

    fn expire(&mut self, now_secs: u64, budget: usize, freed: &mut Vec<Lease>) -> usize {
        let mut changed = 0;
        while changed < budget {
            let Some(&(at, resource)) = self.expiry.first() else {
                break;
            };
            if at > now_secs {
                break;
            }
            let Some(mut lease) = self.by_resource.get(&resource).copied() else {
                self.expiry.pop_first();
                continue;
            };
            changed += 1;
            if lease.state == BindingState::Active {
                // RFC 8415 §18.3: the resource returns to the pool when the valid lifetime
                // ends. The record stays as Expired (history for a returning client) until
                // the same deadline passes again, which the store may use as a grace period.
                lease.state = BindingState::Expired;
                lease.expires_at = now_secs.saturating_add(u64::from(lease.valid_lifetime));
                let _ = self.upsert(lease);
                freed.push(lease);
            } else {
                let _ = self.remove(&resource);
            }
        }
        changed
    }

    fn len(&self) -> usize {
        self.by_resource.len()
    }

    fn for_each(&self, f: &mut dyn FnMut(&Lease)) {
        for l in self.by_resource.values() {
            f(l);
        }
    }

    fn commit(&mut self) -> Result<Option<CommitId>, TableError> {
        if !self.dirty {
            return Ok(None);
        }
        self.dirty = false;
        self.last_commit += 1;
        Ok(Some(self.last_commit))
    }

    fn durable(&mut self, _wait: bool) -> Result<CommitId, TableError> {
        Ok(self.last_commit)
    }
}

//! The partition assignors: range, roundrobin and sticky, as pure functions from the members'
//! subscriptions to one assignment per member.
//!
//! This module owns how partitions are divided among the members of one generation. Invariants
//! (checked by the property tests below): every partition of a subscribed topic gets exactly one
//! owner, and only a member subscribed to its topic; the result depends only on the input (the
//! members' order, ids, subscriptions and owned partitions), never on hashing or time. For
//! members with identical subscriptions roundrobin and sticky are balanced within one partition;
//! sticky also keeps each member's previously owned partitions as far as balance allows, so
//! adding or removing one member moves only the partitions that balance forces to move.

use std::collections::{BTreeMap, BTreeSet};

use weir_proto::wire::TopicPartition;

use crate::catalog::TopicId;

/// An assignment strategy the coordinator implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Per topic, consecutive partition ranges to members sorted by id (Kafka's range).
    Range,
    /// All partitions in (topic, partition) order dealt to members in turn.
    RoundRobin,
    /// Balanced, keeping previously owned partitions where balance allows.
    Sticky,
}

impl Strategy {
    /// Every strategy, in the order the docs list them.
    pub const ALL: [Strategy; 3] = [Strategy::Range, Strategy::RoundRobin, Strategy::Sticky];

    /// The strategy's wire name.
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::RoundRobin => "roundrobin",
            Strategy::Sticky => "sticky",
        }
    }

    /// The strategy with this wire name, if the coordinator implements it.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL
            .into_iter()
            .find(|strategy| strategy.name() == name)
    }
}

/// One member's input to an assignor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member's id (range and roundrobin order members by it).
    pub member_id: String,
    /// The ids of the topics it subscribes to that exist.
    pub topics: BTreeSet<TopicId>,
    /// What it owned in its last generation (sticky keeps these where possible).
    pub owned: Vec<TopicPartition>,
}

/// Divides the partitions of the subscribed topics among `members`; `partition_counts` gives
/// each existing topic's partition count. The result has one (sorted) list per member, in the
/// order of `members`.
pub fn assign(
    strategy: Strategy,
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<TopicId, u32>,
) -> Vec<Vec<TopicPartition>> {
    let mut assignment = match strategy {
        Strategy::Range => range(members, partition_counts),
        Strategy::RoundRobin => round_robin(members, partition_counts),
        Strategy::Sticky => sticky(members, partition_counts),
    };
    for partitions in &mut assignment {
        partitions.sort();
    }
    assignment
}

/// Member indexes sorted by member id.
fn by_id(members: &[MemberSubscription]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|a, b| members[*a].member_id.cmp(&members[*b].member_id));
    order
}

/// Every partition some member subscribes to, in (topic, partition) order.
fn subscribed_partitions(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<TopicId, u32>,
) -> Vec<TopicPartition> {
    let topics: BTreeSet<TopicId> = members
        .iter()
        .flat_map(|member| member.topics.iter().copied())
        .collect();
    topics
        .into_iter()
        .filter_map(|topic_id| Some((topic_id, *partition_counts.get(&topic_id)?)))
        .flat_map(|(topic_id, count)| {
            (0..count).map(move |partition| TopicPartition {
                topic_id,
                partition,
            })
        })
        .collect()
}

fn range(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<TopicId, u32>,
) -> Vec<Vec<TopicPartition>> {
    let mut assignment = vec![Vec::new(); members.len()];
    let order = by_id(members);
    for (&topic_id, &count) in partition_counts {
        let subscribers: Vec<usize> = order
            .iter()
            .copied()
            .filter(|index| members[*index].topics.contains(&topic_id))
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let share = count as usize / subscribers.len();
        let extra = count as usize % subscribers.len();
        let mut next = 0u32;
        for (position, member) in subscribers.iter().enumerate() {
            let take = share + usize::from(position < extra);
            for _ in 0..take {
                assignment[*member].push(TopicPartition {
                    topic_id,
                    partition: next,
                });
                next += 1;
            }
        }
    }
    assignment
}

fn round_robin(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<TopicId, u32>,
) -> Vec<Vec<TopicPartition>> {
    let mut assignment = vec![Vec::new(); members.len()];
    let order = by_id(members);
    if order.is_empty() {
        return assignment;
    }
    let mut turn = 0;
    for partition in subscribed_partitions(members, partition_counts) {
        // The next member in turn that subscribes to the topic; one exists, since the partition
        // comes from some member's subscription.
        for step in 0..order.len() {
            let member = order[(turn + step) % order.len()];
            if members[member].topics.contains(&partition.topic_id) {
                assignment[member].push(partition);
                turn = (turn + step + 1) % order.len();
                break;
            }
        }
    }
    assignment
}

fn sticky(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<TopicId, u32>,
) -> Vec<Vec<TopicPartition>> {
    let mut assignment: Vec<Vec<TopicPartition>> = vec![Vec::new(); members.len()];
    if members.is_empty() {
        return assignment;
    }
    let all = subscribed_partitions(members, partition_counts);
    let valid: BTreeSet<TopicPartition> = all.iter().copied().collect();
    let total = all.len();
    let floor = total / members.len();
    let ceil_slots = total % members.len();

    // Keep what each member owned and may still own; a partition two members claim goes to the
    // first claimer in id order.
    let mut claimed = BTreeSet::new();
    for member in by_id(members) {
        let mut owned: Vec<TopicPartition> = members[member]
            .owned
            .iter()
            .copied()
            .filter(|partition| {
                valid.contains(partition) && members[member].topics.contains(&partition.topic_id)
            })
            .collect();
        owned.sort();
        owned.dedup();
        for partition in owned {
            if claimed.insert(partition) {
                assignment[member].push(partition);
            }
        }
    }

    // Trim to balance: at most `ceil_slots` members keep floor + 1, the others at most floor.
    // Members that own the most keep the extra slot, so fewer partitions move.
    let mut by_owned: Vec<usize> = (0..members.len()).collect();
    by_owned.sort_by(|a, b| {
        assignment[*b]
            .len()
            .cmp(&assignment[*a].len())
            .then_with(|| members[*a].member_id.cmp(&members[*b].member_id))
    });
    let mut released = Vec::new();
    for (rank, member) in by_owned.into_iter().enumerate() {
        let cap = floor + usize::from(rank < ceil_slots);
        while assignment[member].len() > cap {
            if let Some(partition) = assignment[member].pop() {
                claimed.remove(&partition);
                released.push(partition);
            }
        }
    }

    // Deal the rest, each to the subscribed member that has the fewest.
    let order = by_id(members);
    for partition in all.into_iter().filter(|p| !claimed.contains(p)) {
        let target = order
            .iter()
            .copied()
            .filter(|member| members[*member].topics.contains(&partition.topic_id))
            .min_by_key(|member| assignment[*member].len());
        if let Some(member) = target {
            assignment[member].push(partition);
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::testing::Rng;

    fn member(id: &str, topics: &[TopicId], owned: &[TopicPartition]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            topics: topics.iter().copied().collect(),
            owned: owned.to_vec(),
        }
    }

    fn tp(topic_id: TopicId, partition: u32) -> TopicPartition {
        TopicPartition {
            topic_id,
            partition,
        }
    }

    /// Every subscribed partition has exactly one owner, subscribed to its topic.
    fn check_exactly_one_owner(
        members: &[MemberSubscription],
        counts: &BTreeMap<TopicId, u32>,
        assignment: &[Vec<TopicPartition>],
    ) {
        assert_eq!(assignment.len(), members.len());
        let mut owners: BTreeMap<TopicPartition, usize> = BTreeMap::new();
        for (index, partitions) in assignment.iter().enumerate() {
            for partition in partitions {
                assert!(
                    members[index].topics.contains(&partition.topic_id),
                    "{} got {partition:?} of a topic it does not subscribe to",
                    members[index].member_id
                );
                assert!(
                    owners.insert(*partition, index).is_none(),
                    "{partition:?} has two owners"
                );
            }
        }
        let expected: BTreeSet<TopicPartition> =
            subscribed_partitions(members, counts).into_iter().collect();
        let owned: BTreeSet<TopicPartition> = owners.keys().copied().collect();
        assert_eq!(owned, expected, "every subscribed partition is owned");
    }

    fn spread(assignment: &[Vec<TopicPartition>]) -> usize {
        let sizes = assignment.iter().map(Vec::len);
        sizes.clone().max().unwrap_or(0) - sizes.min().unwrap_or(0)
    }

    fn random_case(rng: &mut Rng) -> (Vec<MemberSubscription>, BTreeMap<TopicId, u32>) {
        let topic_count = 1 + rng.below(4) as u32;
        let counts: BTreeMap<TopicId, u32> = (1..=topic_count)
            .map(|topic| (topic, rng.below(20) as u32))
            .collect();
        let member_count = 1 + rng.below(8);
        let uniform = rng.below(2) == 0;
        let all_topics: Vec<TopicId> = counts.keys().copied().collect();
        let members = (0..member_count)
            .map(|index| {
                let topics: Vec<TopicId> = if uniform {
                    all_topics.clone()
                } else {
                    all_topics
                        .iter()
                        .copied()
                        .filter(|_| rng.below(2) == 0)
                        .collect()
                };
                let owned: Vec<TopicPartition> = (0..rng.below(6))
                    .map(|_| {
                        tp(
                            1 + rng.below(topic_count as u64 + 1) as u32,
                            rng.below(24) as u32,
                        )
                    })
                    .collect();
                member(
                    &format!("m{:02}", rng.below(100) * 10 + index),
                    &topics,
                    &owned,
                )
            })
            .collect();
        (members, counts)
    }

    #[test]
    fn every_strategy_gives_each_subscribed_partition_exactly_one_owner() {
        let mut rng = Rng::new(0x5eed_a551);
        for _ in 0..2_000 {
            let (members, counts) = random_case(&mut rng);
            for strategy in Strategy::ALL {
                let assignment = assign(strategy, &members, &counts);
                check_exactly_one_owner(&members, &counts, &assignment);
            }
        }
    }

    #[test]
    fn roundrobin_and_sticky_balance_identical_subscriptions_within_one() {
        let mut rng = Rng::new(0xba1a_0ce0);
        for _ in 0..2_000 {
            let (mut members, counts) = random_case(&mut rng);
            let topics: BTreeSet<TopicId> = counts.keys().copied().collect();
            for member in &mut members {
                member.topics = topics.clone();
            }
            for strategy in [Strategy::RoundRobin, Strategy::Sticky] {
                let assignment = assign(strategy, &members, &counts);
                assert!(
                    spread(&assignment) <= 1,
                    "{strategy:?} unbalanced: {assignment:?}"
                );
            }
        }
    }

    #[test]
    fn range_divides_each_topic_into_consecutive_ranges_by_member_id() {
        let counts = BTreeMap::from([(1, 7), (2, 2)]);
        let members = vec![member("b", &[1, 2], &[]), member("a", &[1, 2], &[])];
        let assignment = assign(Strategy::Range, &members, &counts);
        let a = &assignment[1];
        let b = &assignment[0];
        assert_eq!(
            a,
            &vec![tp(1, 0), tp(1, 1), tp(1, 2), tp(1, 3), tp(2, 0)],
            "a sorts first: the larger range and the first of topic 2"
        );
        assert_eq!(b, &vec![tp(1, 4), tp(1, 5), tp(1, 6), tp(2, 1)]);
    }

    /// Partitions whose owner changed between two assignments, given per member id.
    fn moved(
        before: &BTreeMap<String, Vec<TopicPartition>>,
        after: &BTreeMap<String, Vec<TopicPartition>>,
    ) -> usize {
        let owner_before: BTreeMap<TopicPartition, &String> = before
            .iter()
            .flat_map(|(id, partitions)| partitions.iter().map(move |p| (*p, id)))
            .collect();
        after
            .iter()
            .flat_map(|(id, partitions)| partitions.iter().map(move |p| (*p, id)))
            .filter(|(partition, id)| owner_before.get(partition) != Some(id))
            .count()
    }

    fn sticky_round(
        ids: &[&str],
        previous: &BTreeMap<String, Vec<TopicPartition>>,
        counts: &BTreeMap<TopicId, u32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let topics: Vec<TopicId> = counts.keys().copied().collect();
        let members: Vec<MemberSubscription> = ids
            .iter()
            .map(|id| {
                let owned = previous.get(*id).cloned().unwrap_or_default();
                member(id, &topics, &owned)
            })
            .collect();
        let assignment = assign(Strategy::Sticky, &members, counts);
        check_exactly_one_owner(&members, counts, &assignment);
        ids.iter()
            .map(|id| id.to_string())
            .zip(assignment)
            .collect()
    }

    #[test]
    fn sticky_moves_only_what_balance_forces_when_membership_changes() {
        let counts = BTreeMap::from([(1, 12)]);
        let three = sticky_round(&["a", "b", "c"], &BTreeMap::new(), &counts);
        assert!(three.values().all(|partitions| partitions.len() == 4));

        // Removing one of three: only the leaver's 4 partitions move.
        let two = sticky_round(&["a", "c"], &three, &counts);
        assert_eq!(moved(&three, &two), 4);
        assert!(two.values().all(|partitions| partitions.len() == 6));
        for id in ["a", "c"] {
            assert!(
                three[id].iter().all(|p| two[id].contains(p)),
                "{id} keeps its own"
            );
        }

        // Adding a fourth to three: the newcomer takes 3, one from each, nothing else moves.
        let four = sticky_round(&["a", "b", "c", "d"], &three, &counts);
        assert_eq!(moved(&three, &four), 3);
        assert!(four.values().all(|partitions| partitions.len() == 3));
    }

    #[test]
    fn sticky_movement_is_minimal_for_random_membership_changes() {
        let mut rng = Rng::new(42);
        for _ in 0..500 {
            let partitions = 1 + rng.below(40) as u32;
            let counts = BTreeMap::from([(1, partitions)]);
            let names: Vec<String> = (0..1 + rng.below(7)).map(|i| format!("m{i}")).collect();
            let ids: Vec<&str> = names.iter().map(String::as_str).collect();
            let before = sticky_round(&ids, &BTreeMap::new(), &counts);
            let mut after_ids: Vec<&str> = ids.clone();
            let added = format!("n{}", rng.below(1000));
            let removing = after_ids.len() > 1 && rng.below(2) == 0;
            if removing {
                after_ids.remove(rng.below(after_ids.len() as u64) as usize);
            } else {
                after_ids.push(&added);
            }
            let after = sticky_round(&after_ids, &before, &counts);
            assert!(spread(&after.values().cloned().collect::<Vec<_>>()) <= 1);
            // The least movement any balanced assignment needs: every partition a member
            // loses beyond its new quota, plus everything the leaver held.
            let total = partitions as usize;
            let floor = total / after_ids.len();
            let extra = total % after_ids.len();
            let mut kept_sizes: Vec<usize> = after_ids
                .iter()
                .map(|id| before.get(*id).map_or(0, Vec::len))
                .collect();
            kept_sizes.sort_unstable_by(|a, b| b.cmp(a));
            let keepable: usize = kept_sizes
                .iter()
                .enumerate()
                .map(|(rank, size)| (*size).min(floor + usize::from(rank < extra)))
                .sum();
            assert_eq!(
                moved(&before, &after),
                total - keepable,
                "{ids:?} -> {after_ids:?} on {partitions}"
            );
        }
    }

    #[test]
    fn strategy_names_round_trip() {
        for strategy in Strategy::ALL {
            assert_eq!(Strategy::from_name(strategy.name()), Some(strategy));
        }
        assert_eq!(Strategy::from_name("cooperative-sticky"), None);
    }
}

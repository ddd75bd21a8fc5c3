from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from cohorts.models import GroupStrategy
from cohorts.selectors import cohort_by_slug, cohort_groups_have_place_to_talk
from signups.groups import (
    ExperimentNotSet, GroupsExist, NoLearnersToGroup, cohort_groups_form, cohort_groups_quality, cohort_groups_reform,
    formation_quality_problem, groups_without_place_to_talk_warning,
)


class Command(BaseCommand):
    help = (
        "Form a cohort's study groups by its strategy and print the quality report (per strategy, with the seed); "
        "--reform merges groups that shrank."
    )

    def add_arguments(self, parser):
        parser.add_argument("cohort_slug")
        parser.add_argument("--reform", action="store_true", help="Groups exist: merge those below the minimum.")
        parser.add_argument(
            "--seed", type=int, default=None,
            help="Seed for the grouping and an experiment's split (default: the cohort's id); recorded on the cohort.",
        )

    def handle(self, *args, cohort_slug, reform, seed, **options):
        cohort = cohort_by_slug(cohort_slug)
        if cohort is None:
            raise CommandError(f"There is no cohort with the slug {cohort_slug!r}.")
        if reform:
            result = cohort_groups_reform(cohort, now=timezone.now())
            self.stdout.write(
                f"Re-formed: moved {result.moved} learners; merged away: {', '.join(result.dissolved) or 'none'}; "
                f"{result.quiet} quiet learners not counted as active."
            )
            quality = cohort_groups_quality(cohort)
        else:
            try:
                quality = cohort_groups_form(cohort, now=timezone.now(), seed=seed)
            except GroupsExist:
                raise CommandError(f"{cohort} has groups already. Use --reform to merge groups that shrank.") from None
            except NoLearnersToGroup:
                raise CommandError(f"{cohort} has no confirmed learner who wants a group: nothing changed.") from None
            except ExperimentNotSet as refusal:
                raise CommandError(f"{refusal} Nothing changed.") from None
        if not cohort_groups_have_place_to_talk(cohort):
            self.stderr.write(f"Warning: {groups_without_place_to_talk_warning(cohort)}")
        self.stdout.write(f"{'group':<12} {'strategy':<20} {'size':>4} {'spread h':>8}  experience")
        for row in quality.groups:
            levels = ", ".join(f"{level} {count}" for level, count in sorted(row.experience.items()))
            self.stdout.write(f"{row.key.name:<12} {row.strategy:<20} {row.size:>4} {row.spread_hours:>8.1f}  {levels}")
        for strategy, part in quality.per_strategy().items():
            self.stdout.write(
                f"{GroupStrategy(strategy).label}: {len(part.groups)} groups for {part.learners} learners; "
                f"sizes {part.smallest}-{part.largest}; {part.share_within_good_spread:.1%} of groups within 2 hours, "
                f"{part.share_mixing_experience:.1%} mixing experience levels."
            )
        self.stdout.write(
            f"{len(quality.groups)} groups for {quality.learners} learners; sizes {quality.smallest}-{quality.largest}; "
            f"{quality.share_within_good_spread:.1%} of groups within 2 hours; {quality.ungrouped} left without a group."
        )
        self.stdout.write(f"Seed: {quality.seed if quality.seed is not None else 'none recorded'}.")
        problem = formation_quality_problem(cohort, quality)
        if problem:
            self.stderr.write(f"Warning: poor groups: {problem}")

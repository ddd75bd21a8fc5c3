from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from cohorts.selectors import cohort_by_slug, cohort_groups_have_place_to_talk
from signups.groups import (
    GroupsExist, NoLearnersToGroup, cohort_groups_form, cohort_groups_quality, cohort_groups_reform,
    groups_without_place_to_talk_warning,
)


class Command(BaseCommand):
    help = "Form a cohort's study groups and print the quality report; --reform merges groups that shrank."

    def add_arguments(self, parser):
        parser.add_argument("cohort_slug")
        parser.add_argument("--reform", action="store_true", help="Groups exist: merge those below the minimum.")
        parser.add_argument("--seed", type=int, default=None, help="Seed for the grouping (default: the cohort's id).")

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
        if not cohort_groups_have_place_to_talk(cohort):
            self.stderr.write(f"Warning: {groups_without_place_to_talk_warning(cohort)}")
        self.stdout.write(f"{'group':<12} {'size':>4} {'spread h':>8}  experience")
        for row in quality.groups:
            levels = ", ".join(f"{level} {count}" for level, count in sorted(row.experience.items()))
            self.stdout.write(f"{row.key.name:<12} {row.size:>4} {row.spread_hours:>8.1f}  {levels}")
        self.stdout.write(
            f"{len(quality.groups)} groups for {quality.learners} learners; sizes {quality.smallest}-{quality.largest}; "
            f"{quality.share_within_good_spread:.1%} of groups within 2 hours; {quality.ungrouped} left without a group."
        )

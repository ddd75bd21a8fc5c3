import factory
from django.utils import timezone as django_timezone

from cohorts.tests.factories import CohortFactory
from signups.models import Enrollment, Learner


class LearnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Learner

    email = factory.Sequence(lambda n: f"learner{n}@example.org")
    first_name = factory.Faker("first_name")
    timezone = "Europe/Lisbon"
    experience = "some"
    confirmed_at = factory.LazyFunction(django_timezone.now)


class EnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Enrollment

    learner = factory.SubFactory(LearnerFactory)
    cohort = factory.SubFactory(CohortFactory)
    course = factory.LazyAttribute(lambda enrollment: enrollment.cohort.course)
    status = Enrollment.Status.ACTIVE

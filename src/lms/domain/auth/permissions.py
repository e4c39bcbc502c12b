"""The RBAC matrix of the design (LEARNER < CREATOR < ADMIN) as one table (the route guards that
apply it are lms.api.security.requires).

Every permission names the least role that holds it; a higher role holds everything below.
Ownership ("manage own courses") is checked by the services on top of this.
"""

from __future__ import annotations

from enum import StrEnum

from lms.db.tables import Role

ROLE_RANK = {Role.LEARNER: 1, Role.CREATOR: 2, Role.ADMIN: 3}


class Permission(StrEnum):
    # LEARNER (L1 "browse published courses" needs no account at all)
    ENROLL = "L2 enroll in courses"
    TRACK_PROGRESS = "L3 track progress"
    DOWNLOAD_CERTIFICATES = "L4 download certificates"
    APPLY_FOR_CREATOR = "L5 apply to be a creator"
    # CREATOR
    CREATE_COURSES = "C2 create courses"
    UPLOAD_LESSONS = "C3 upload lessons"
    MANAGE_OWN_COURSES = "C4 manage own courses"
    SUBMIT_FOR_REVIEW = "C5 submit for review"
    VIEW_ANALYTICS = "C6 view analytics"
    # ADMIN
    REVIEW_APPLICATIONS = "A2 review creator applications"
    DECIDE_APPLICATIONS = "A3 approve or reject applications"
    PUBLISH_COURSES = "A4 publish or reject courses"
    MANAGE_USERS = "A5 manage all users"
    SYSTEM_SETTINGS = "A6 system settings"


MINIMUM_ROLE: dict[Permission, Role] = {
    Permission.ENROLL: Role.LEARNER,
    Permission.TRACK_PROGRESS: Role.LEARNER,
    Permission.DOWNLOAD_CERTIFICATES: Role.LEARNER,
    Permission.APPLY_FOR_CREATOR: Role.LEARNER,
    Permission.CREATE_COURSES: Role.CREATOR,
    Permission.UPLOAD_LESSONS: Role.CREATOR,
    Permission.MANAGE_OWN_COURSES: Role.CREATOR,
    Permission.SUBMIT_FOR_REVIEW: Role.CREATOR,
    Permission.VIEW_ANALYTICS: Role.CREATOR,
    Permission.REVIEW_APPLICATIONS: Role.ADMIN,
    Permission.DECIDE_APPLICATIONS: Role.ADMIN,
    Permission.PUBLISH_COURSES: Role.ADMIN,
    Permission.MANAGE_USERS: Role.ADMIN,
    Permission.SYSTEM_SETTINGS: Role.ADMIN,
}


def has_permission(role: str, permission: Permission) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[MINIMUM_ROLE[permission]]
